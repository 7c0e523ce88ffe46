"""The ``exchange-server`` commands as an operator uses them."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from exchange_server.cli import main


def run(runner: CliRunner, data: Path, *args: str) -> str:
    result = runner.invoke(main, ["--data-dir", str(data), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_accounts_tokens_cycles_and_lists(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "srv"
    from exchange_server.migrations import head_revision

    head = head_revision()
    assert f"at revision {head} (was empty)" in run(runner, data, "init")
    assert f"(was {head})" in run(runner, data, "init")
    run(runner, data, "account", "create", "prov42", "--role", "province", "--party", "42")
    run(runner, data, "account", "create", "boss", "--role", "admin", "--password", "correct-horse")
    out = run(runner, data, "token", "create", "prov42", "--out", str(tmp_path / "tok"))
    assert "written to" in out and oct((tmp_path / "tok").stat().st_mode)[-3:] == "600"
    assert (tmp_path / "tok").read_text().startswith("kam_")
    listing = run(runner, data, "token", "list")
    assert "prov42" in listing and (tmp_path / "tok").read_text().strip() not in listing
    assert "prov42" in run(runner, data, "account", "list")
    run(runner, data, "cycle", "create", "202610", "--deadline", "20261110180000")
    assert "is open" in run(runner, data, "cycle", "open", "202610")
    assert "is closed" in run(runner, data, "cycle", "close", "202610")
    assert "202610  closed   deadline 20261110180000" in run(runner, data, "cycle", "list")
    pub = tmp_path / "key.pub"
    from exchange_server.sftp.keys import new_ed25519

    pub.write_text(new_ed25519()[1])
    assert "SHA256:" in run(runner, data, "sshkey", "add", "prov42", str(pub))


def test_domain_errors_print_one_line_and_exit_1(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "srv"
    run(runner, data, "init")
    result = runner.invoke(main, ["--data-dir", str(data), "cycle", "open", "209901"])
    assert result.exit_code == 1
    assert "error [cycle_not_found]" in result.output and "不在报告日历中" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["--data-dir", str(data), "account", "create", "x", "--role", "province",
                                  "--party", "99"])
    assert result.exit_code == 1 and "bad_party" in result.output


def test_list_load_publish_show(tmp_path: Path) -> None:
    from exchange_server.sample_data.generator import generate
    from schemas import load_spec

    generate(load_spec(), "202610", tmp_path / "s", provinces=["42"], scale=1, fmt="txt", seed=3)
    runner = CliRunner()
    data = tmp_path / "srv"
    run(runner, data, "init")
    check = next((tmp_path / "s" / "00").glob("D_00_2026V01_*.chk"))
    out = run(runner, data, "list", "load", str(check), "--publish")
    assert "loaded list 2026V01: 500 entries (+500 new" in out and "published 2026V01 to 31 province(s)" in out
    assert "2026V01   published" in run(runner, data, "list", "show")
