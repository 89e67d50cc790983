"""supervisord.conf rendered from a plan, read back by supervisord's own parser: commands,
environments (escaped, secrets left in supervisord's environment), grace periods, groups in
start order, health URLs, what is restarted and what is not."""

from __future__ import annotations

import pwd
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import NO_GPU, MakeLayout, gpu
from supervisor.options import ServerOptions

from genstack.deploy.services import EXPECTED_EXIT_CODES, Plan, make_plan
from genstack.deploy.settings import DeploySettings
from genstack.deploy.supervisord import MONITOR, render
from genstack.provision.gpu import GpuInfo

MONITOR_ARGV = ("/venvs/deploy/bin/genstack-deploy", "monitor", "--run-dir", "/data/run")


def parsed(
    plan: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, console: bool = False
) -> dict[str, Any]:
    """Program name -> supervisord's ProcessConfig, and the group order, as supervisord reads
    the rendered file."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(render(plan, monitor_argv=MONITOR_ARGV, console=console))
    plan.layout.log_dir.mkdir(parents=True, exist_ok=True)
    plan.layout.run_dir.mkdir(parents=True, exist_ok=True)
    options = ServerOptions()
    options.realize(args=["--configuration", str(conf)])
    programs = {}
    for group in options.process_group_configs:
        for process in group.process_configs:
            programs[process.name] = process
    order = [g.name for g in sorted(options.process_group_configs)]
    return {"programs": programs, "order": order, "options": options}


def plan_of(env: dict[str, str], layout: MakeLayout, gpus: GpuInfo = NO_GPU) -> Plan:
    settings = DeploySettings.from_env(env)
    return make_plan(settings, layout(), gpus, env, check=False, redis_server="/usr/bin/redis")


def test_supervisord_reads_every_program_as_planned(
    layout: MakeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_of({"ENABLE_XTTS": "true"}, layout, GpuInfo(devices=(gpu(0), gpu(1))))
    read = parsed(plan, tmp_path, monkeypatch)
    programs = read["programs"]
    assert set(programs) == {p.name for p in plan.programs} | {MONITOR}
    for program in plan.programs:
        process = programs[program.name]
        assert shlex.split(process.command) == list(program.argv)
        assert process.stopwaitsecs == program.stop_grace_s
        assert process.stopasgroup and process.killasgroup
        assert process.exitcodes == list(EXPECTED_EXIT_CODES)
        # Every program carries its health check, the same variable the images use.
        assert process.environment["GENSTACK_HEALTH_URL"] == program.health.url
        for key, value in program.env.items():
            assert process.environment[key] == value
        assert process.stdout_logfile == str(plan.layout.log_dir / f"{program.name}.log")
    assert programs["xtts-gpu1"].environment["CUDA_VISIBLE_DEVICES"] == gpu(1).uuid
    # Started by tier; supervisord stops in the reverse order: the gateway first, every
    # worker (and the uploader) together, then the model servers, Redis last.
    assert read["order"] == ["store", "models", "workers", "edge", MONITOR]
    groups = {
        g.name: sorted(p.name for p in g.process_configs)
        for g in read["options"].process_group_configs
    }
    assert groups["workers"] == ["uploader", "xtts-worker-gpu0", "xtts-worker-gpu1"]
    assert groups["models"] == ["xtts-gpu0", "xtts-gpu1"]


def test_values_are_escaped_for_supervisord(
    layout: MakeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "data, with a comma and spaces"
    env = {"DATA_DIR": str(odd), "ENABLE_XTTS": "true"}
    settings = DeploySettings.from_env(env)
    plan = make_plan(settings, layout(data_dir=odd), NO_GPU, env, check=False)
    # A % in a value (a URL's escape, say) reaches the program as it is.
    plan.program("xtts").env["XTTS_PUBLIC_URL"] = "http://box/100%25"  # type: ignore[index]
    programs = parsed(plan, tmp_path, monkeypatch)["programs"]
    assert programs["gateway"].environment["OUTPUT_DIR"] == str(odd / "outputs")
    assert programs["xtts"].environment["XTTS_PUBLIC_URL"] == "http://box/100%25"
    assert shlex.split(programs["redis"].command)[6] == str(odd / "redis")
    with pytest.raises(ValueError, match="% in the data folder"):
        render(
            make_plan(settings, layout(data_dir=tmp_path / "100%"), NO_GPU, env, check=False),
            monitor_argv=MONITOR_ARGV,
            console=True,
        )


def test_a_secret_stays_in_supervisords_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genstack.deploy.runtime import pod_layout

    env = {"JUPYTER_PASSWORD": "s3cret-token-value", "ENABLE_COMFYUI": "false"}
    settings = DeploySettings.from_env(env)
    layout = pod_layout(settings, volume_mounted=False, as_root=True)
    assert layout.user == "genstack"
    # supervisord resolves user= as it reads the file: a user this machine has.
    layout = type(layout)(**{**layout.__dict__, "data_dir": tmp_path / "d", "user": "nobody"})
    plan = make_plan(settings, layout, NO_GPU, env, check=False, redis_server="/usr/bin/redis")
    monkeypatch.setenv("JUPYTER_PASSWORD", "s3cret-token-value")
    read = parsed(plan, tmp_path, monkeypatch, console=True)
    assert "s3cret-token-value" not in (tmp_path / "supervisord.conf").read_text()
    jupyter = read["programs"]["jupyter"]
    assert jupyter.environment["JUPYTER_TOKEN"] == "s3cret-token-value"
    assert jupyter.uid is None  # root, as supervisord
    nobody = pwd.getpwnam("nobody").pw_uid
    assert {p.uid for name, p in read["programs"].items() if name not in ("jupyter", MONITOR)} == {
        nobody
    }
    assert read["programs"]["gateway"].stdout_logfile == "/dev/stdout"


def test_a_value_supervisord_cannot_carry_is_refused(layout: MakeLayout) -> None:
    env = {"XTTS_MODEL_DIR": "", "ENABLE_XTTS": "true", "TTS_VOICES_DIR": 'a"b'}
    plan = plan_of(env, layout)
    # The user's TTS_VOICES_DIR is inherited, not written: nothing to refuse.
    render(plan, monitor_argv=MONITOR_ARGV, console=True)
    bad = make_plan(
        DeploySettings.from_env({}), layout(data_dir=Path('/tmp/a"b')), NO_GPU, {}, check=False
    )
    with pytest.raises(ValueError, match="double quote"):
        render(bad, monitor_argv=MONITOR_ARGV, console=True)
