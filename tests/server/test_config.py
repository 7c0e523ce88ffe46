"""Settings come from one place, in a fixed order of precedence."""
from __future__ import annotations

from pathlib import Path

import pytest

from exchange_server.config import ensure_secret_key, load_settings
from exchange_server.errors import ConfigError


def test_defaults_then_instance_file_then_environment_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('port = 9000\nmax_file_size = 1000\nhost = "0.0.0.0"\n')
    env = {"KAM_DATA_DIR": str(tmp_path), "KAM_PORT": "9100", "KAM_WORKER_THREADS": "3"}
    s = load_settings({"worker_threads": 5}, environ=env)
    assert (s.host, s.port, s.max_file_size, s.worker_threads) == ("0.0.0.0", 9100, 1000, 5)
    assert s.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'exchange.db'}" and s.is_sqlite
    assert load_settings({"data_dir": str(tmp_path)}, environ={}).port == 9000


def test_bad_settings_fail_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("portt = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'portt'"):
        load_settings({"data_dir": str(tmp_path)}, environ={})
    with pytest.raises(ConfigError, match="KAM_PORT|port must be a whole number"):
        load_settings({"data_dir": str(tmp_path / "x")}, environ={"KAM_PORT": "eighty"})
    (tmp_path / "config.toml").write_text("port = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"data_dir": str(tmp_path)}, environ={})


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    s = ensure_secret_key(load_settings({"data_dir": str(tmp_path)}, environ={}))
    again = ensure_secret_key(load_settings({"data_dir": str(tmp_path)}, environ={}))
    assert len(s.secret_key) == 64 and s.secret_key == again.secret_key
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"
