"""Building blocks for realistic Chinese customer, person and place names (sample data only)."""
from __future__ import annotations

import random

# Industry (sector code of Domain_c_type_id, first two digits) -> name stems and suffixes.
INDUSTRY_STEMS: dict[str, list[str]] = {
    "10": ["人民政府办公厅", "财政厅", "公安厅", "税务局", "海关", "国土资源厅", "发展和改革委员会", "交通运输厅",
           "人力资源和社会保障厅", "统计局", "气象局", "人民检察院", "高级人民法院", "总工会"],
    "11": ["工商银行", "农业银行", "中国银行", "建设银行", "交通银行", "招商银行", "兴业银行", "证券", "人寿保险",
           "财产保险", "农村信用社联合社", "城市商业银行", "信托投资", "期货经纪"],
    "12": ["电力", "电网", "石油化工", "石油天然气", "煤业", "能源投资", "热电", "燃气", "新能源", "水电开发"],
    "13": ["铁路局", "航空", "机场", "港务", "高速公路", "远洋运输", "邮政", "物流", "公路运输", "地铁"],
    "14": ["钢铁", "汽车", "电子", "机械", "化工", "制药", "烟草工业", "重工", "有色金属", "纺织", "家电", "船舶"],
    "15": ["百货", "商贸", "连锁超市", "大酒店", "旅游", "房地产开发", "建设工程", "国际贸易", "医药连锁"],
    "16": ["广播电视台", "日报社", "出版", "有线电视网络", "信息技术", "软件", "网络科技", "数据科技", "云计算"],
    "17": ["大学", "理工大学", "师范大学", "医科大学", "人民医院", "中心医院", "中医院", "职业技术学院", "第一中学"],
    "18": ["实业", "投资", "控股", "发展", "科技"],
}
INDUSTRY_SUFFIXES: dict[str, list[str]] = {
    "10": [""],
    "11": ["分行", "股份有限公司", "有限责任公司", "分公司"],
    "12": ["集团有限公司", "股份有限公司", "有限责任公司", "分公司"],
    "13": ["集团有限公司", "股份有限公司", "有限公司", ""],
    "14": ["集团有限公司", "股份有限公司", "有限公司"],
    "15": ["集团有限公司", "股份有限公司", "有限公司"],
    "16": ["", "集团有限公司", "股份有限公司", "有限公司"],
    "17": [""],
    "18": ["集团有限公司", "股份有限公司", "有限公司"],
}
NATIONAL_GROUPS = ["中国石油天然气集团", "中国石油化工集团", "国家电网", "中国南方电网", "中国工商银行", "中国银行",
                   "中国建设银行", "中国农业银行", "中国人寿保险", "中国人民财产保险", "中国移动通信集团",
                   "中国远洋运输集团", "中国东方航空集团", "中国南方航空集团", "中国国际航空", "宝钢集团", "鞍钢集团",
                   "中国第一汽车集团", "东风汽车", "中国烟草总公司", "中国邮政集团", "中国中铁", "中国铁建",
                   "中国建筑工程总公司", "中国华能集团", "中国大唐集团", "中国国电集团", "中国华电集团", "中国电力投资集团",
                   "神华集团", "中国中化集团", "中粮集团", "招商局集团", "中国海洋石油总公司", "中国平安保险"]
ROADS = ["人民路", "解放路", "中山路", "建设路", "新华路", "长江路", "黄河路", "和平路", "胜利路", "光明路",
         "朝阳路", "学府路", "金融街", "世纪大道", "滨江大道", "科技园路", "东风路", "文化路", "友谊路", "青年路"]
DISTRICTS = ["中心区", "高新区", "开发区", "新区", "城东区", "城西区", "城南区", "城北区"]

# (characters, pinyin): surnames and given names for contacts and account managers.
SURNAMES = [("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
            ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
            ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"),
            ("林", "lin"), ("罗", "luo"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
            ("唐", "tang"), ("许", "xu"), ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao")]
GIVEN = [("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"), ("强", "qiang"),
         ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"), ("杰", "jie"), ("娟", "juan"),
         ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀英", "xiuying"), ("华", "hua"), ("建国", "jianguo"),
         ("志强", "zhiqiang"), ("海燕", "haiyan"), ("晓东", "xiaodong"), ("红梅", "hongmei"), ("国庆", "guoqing"),
         ("文博", "wenbo"), ("雪", "xue"), ("琳", "lin"), ("鹏", "peng"), ("辉", "hui")]
TITLES = ["信息中心主任", "办公室主任", "总经理", "副总经理", "财务部经理", "网络管理员", "技术总监", "采购部经理",
          "行政部经理", "通信科科长"]


def person(rng: random.Random) -> tuple[str, str]:
    """A Chinese name and its pinyin (for e-mail addresses)."""
    s, sp = rng.choice(SURNAMES)
    g, gp = rng.choice(GIVEN)
    return s + g, sp + gp


def company(rng: random.Random, sector: str, city: str) -> tuple[str, str | None]:
    """A company name for an industry sector in a city, and its national group parent if it has one."""
    stem = rng.choice(INDUSTRY_STEMS.get(sector, INDUSTRY_STEMS["18"]))
    suffix = rng.choice(INDUSTRY_SUFFIXES.get(sector, INDUSTRY_SUFFIXES["18"]))
    if sector in ("11", "12", "13") and rng.random() < 0.35:
        parent = rng.choice(NATIONAL_GROUPS)
        return f"{parent}{city}分公司", parent + ("有限公司" if not parent.endswith(("公司", "集团")) else "")
    if sector == "10":
        return f"{city}市{stem}", None
    trade = "".join(rng.choice("华兴盛通达远恒泰安信金宏鑫隆昌和丰") for _ in range(2))
    if sector == "17":
        return f"{city}{stem}", None
    return f"{city}{trade}{stem}{suffix}", None


def address(rng: random.Random, city: str) -> str:
    """A street address in ``city``."""
    return f"{city}市{rng.choice(DISTRICTS)}{rng.choice(ROADS)}{rng.randint(1, 999)}号"
