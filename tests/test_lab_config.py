"""Lab mode's pieces without services (fast): the instance template chosen by the environment,
step routing by device, checked queue names, the worker's argv and settings file, and devices.toml's
`lab_host`. The lab itself runs in tests/test_lab.py (markers lab, slow)."""

import pytest

from kit.core.errors import NameError_, Sme2Error
from kit.core.home import DataRoot
from kit.devices import inventory
from sme2_assets import lab
from sme2_assets.partitions import build_tags, config_tags, run_tags

DEVICES = """
[device.x300]
transport = "adb"
serial = "ABC123"
platform = "android-arm64-v8a"
lab_host = "lab-host-1"

[device.bench2]
transport = "local"
lab_host = "lab-host-2"
"""


def test_instance_yaml_follows_the_environment_and_keeps_a_users_file(tmp_path):
    home = tmp_path / "dh"
    home.mkdir()
    target = lab.write_instance_yaml(home, {})
    assert target.read_text() == lab.SQLITE_YAML.read_text()
    lab.write_instance_yaml(home, {lab.PG_ENV: "postgresql://u@h/db"})
    text = target.read_text()
    assert "postgres_url" in text and "env: SME2_DAGSTER_PG_URL" in text and "u@h" not in text  # no secret on disk
    assert "sme2/device" in text  # the run queue's limits are kept
    lab.write_instance_yaml(home, {})
    assert target.read_text() == lab.SQLITE_YAML.read_text()
    target.write_text("# mine\n")
    lab.write_instance_yaml(home, {lab.PG_ENV: "postgresql://u@h/db"})
    assert target.read_text() == "# mine\n"


def test_runs_of_a_device_go_to_its_lab_host(tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    root.user_devices.write_text(DEVICES)
    assert run_tags("x300.sme2-on", root) == {"sme2/device": "x300", "sme2/cpu": "x300", "sme2/queue": "lab-host-1"}
    # a local device of a lab host shares that host's CPU limit, not the lab server's
    assert run_tags("bench2.sme2-off", root) == {
        "sme2/device": "bench2",
        "sme2/cpu": "lab-host-2",
        "sme2/queue": "lab-host-2",
    }
    assert "sme2/queue" not in run_tags("host.sme2-off", root)  # no lab host: the default queue
    # runner builds go to the device's host (its runner cache); without a lab host, the local CPU
    assert build_tags("x300.sme2-off", root) == {"sme2/cpu": "lab-host-1", "sme2/queue": "lab-host-1"}
    assert build_tags("host.sme2-off", root) == {"sme2/cpu": "local"}
    # an experiment config on one lab host's devices runs there; over several hosts, nowhere in particular
    assert config_tags(["bench2"], root)["sme2/queue"] == "lab-host-2"
    assert "sme2/queue" not in config_tags(["bench2", "x300"], root)
    assert lab.step_queue({}, {"sme2/queue": "lab-host-1"}, "dagster") == "lab-host-1"
    assert lab.step_queue({"dagster-celery/queue": "gpu"}, {"sme2/queue": "lab-host-1"}, "dagster") == "gpu"
    assert lab.step_queue({}, {}, "dagster") == "dagster"
    with pytest.raises(Sme2Error, match="sme2/queue"):
        lab.step_queue({}, {"sme2/queue": "-Q evil"}, "dagster")


def test_lab_host_names_are_checked_where_they_are_read(tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    root.user_devices.write_text('[device.p]\ntransport = "adb"\nserial = "A1"\nlab_host = "../x"\n')
    with pytest.raises(Sme2Error, match="lab_host"):
        inventory.load_registry(root)
    with pytest.raises(NameError_):
        lab.worker_argv(["lab host"])
    with pytest.raises(Sme2Error):
        lab.worker_argv([])


def test_worker_argv_and_settings_match_the_executor(tmp_path):
    env = {lab.BROKER_ENV: "redis://lab-server:6379/0", lab.VISIBILITY_ENV: "900"}
    argv = lab.worker_argv(["lab-host-1", "dagster"])
    assert argv[argv.index("-Q") + 1] == "lab-host-1,dagster"
    assert argv[argv.index("-n") + 1] == "lab-host-1@%h"
    assert argv[argv.index("--concurrency") + 1] == "1"
    settings = lab.celery_settings(env)
    assert settings["backend"] == settings["broker"] == "redis://lab-server:6379/0"
    assert settings["config_source"]["task_acks_late"] and settings["config_source"]["task_reject_on_worker_lost"]
    assert settings["config_source"]["broker_transport_options"]["visibility_timeout"] == 900
    folder = lab.worker_files(tmp_path, ["lab-host-1"], env)
    namespace: dict = {}
    exec((folder / "dagster_celery_config.py").read_text(), namespace)  # the module celery imports
    assert namespace["broker_url"] == "redis://lab-server:6379/0" and namespace["task_acks_late"] is True
    with pytest.raises(Sme2Error, match="SME2_CELERY_BROKER"):
        lab.celery_settings({})
    with pytest.raises(Sme2Error, match="positive number"):
        lab.celery_settings({**env, lab.VISIBILITY_ENV: "soon"})


def test_a_plain_postgresql_url_names_the_installed_driver():
    env = {lab.PG_ENV: "postgresql://dagster:pw@lab-server:5432/dagster"}
    lab.normalize_pg_url(env)
    assert (
        env[lab.PG_ENV]
        in (
            "postgresql+psycopg2://dagster:pw@lab-server:5432/dagster",  # psycopg 3 absent (dagster-postgres brings psycopg2)
            "postgresql://dagster:pw@lab-server:5432/dagster",
        )
    )
    env = {lab.PG_ENV: "postgresql+psycopg://u@h/d"}
    lab.normalize_pg_url(env)
    assert env[lab.PG_ENV] == "postgresql+psycopg://u@h/d"  # an explicit driver is kept
