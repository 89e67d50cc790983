"""The plan of one host made from the description: which programs run, their environment and
ports, one model server and one worker per engine per GPU, and the problems said once."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from conftest import NO_GPU, MakeLayout, gpu, install

from genstack.deploy.runtime import pod_layout
from genstack.deploy.services import Plan, gpu_slots, make_plan
from genstack.deploy.settings import DeploySettings
from genstack.provision.gpu import GpuInfo
from genstack.testing.ports import free_port

REDIS = "/usr/bin/redis-server"
PORT_VARS = ("REDIS_PORT", "GATEWAY_PORT", "UPLOAD_METRICS_PORT", "WORKER_HEALTH_PORT",
             "XTTS_PORT", "CHATTERBOX_PORT", "COMFYUI_PORT")  # fmt: skip


def plan_for(
    env: dict[str, str], layout: MakeLayout, gpus: GpuInfo = NO_GPU, **kwargs: object
) -> Plan:
    check = bool(kwargs.pop("check", False))
    if check:
        # The checks look at this machine's ports: free ones, unless the test names one.
        env = {**{var: str(free_port()) for var in PORT_VARS}, **env}
    settings = DeploySettings.from_env(env)
    return make_plan(settings, layout(**kwargs), gpus, env, check=check, redis_server=REDIS)


def names(plan: Plan) -> list[str]:
    return [p.name for p in plan.programs]


def test_with_no_model_service_the_stack_is_redis_the_uploader_and_the_gateway(
    layout: MakeLayout, tmp_path: Path
) -> None:
    plan = plan_for({}, layout)
    assert names(plan) == ["redis", "uploader", "gateway"]
    redis = plan.program("redis")
    assert redis.argv[:7] == (REDIS, "--port", "6379", "--bind", "127.0.0.1", "--dir",
                              str(tmp_path / "data" / "redis"))  # fmt: skip
    assert "--appendonly" in redis.argv
    gateway = plan.program("gateway")
    assert gateway.env["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert gateway.env["STORAGE_DIR"] == str(tmp_path / "data" / "storage")
    assert gateway.env["OUTPUT_DIR"] == str(tmp_path / "data" / "outputs")
    # No engine runs, so no backend is served (an empty value would mean "all").
    assert gateway.env["GATEWAY_ENABLED_BACKENDS"] == ","
    assert gateway.env["GATEWAY_API_KEYS_FILE"] == str(tmp_path / "data" / "gateway-api-keys")
    assert gateway.health.url == "http://127.0.0.1:8080/readyz"
    assert plan.program("uploader").health.url == "http://127.0.0.1:9101/healthz"
    assert plan.problems == []


def test_an_existing_redis_is_used_and_none_started(layout: MakeLayout) -> None:
    plan = plan_for({"REDIS_URL": "redis://10.0.0.5:6379/2", "ENABLE_XTTS": "true"}, layout)
    assert "redis" not in names(plan)
    assert {p.env["REDIS_URL"] for p in plan.programs if p.name != "monitor"} == {
        "redis://10.0.0.5:6379/2"
    }


def test_given_keys_are_left_to_the_gateway(layout: MakeLayout) -> None:
    plan = plan_for({"GATEWAY_API_KEYS": "k" * 20}, layout)
    assert "GATEWAY_API_KEYS_FILE" not in plan.program("gateway").env


def test_xtts_on_the_cpu_runs_its_server_and_worker_with_compose_cpu_defaults(
    layout: MakeLayout, tmp_path: Path
) -> None:
    env = {"ENABLE_XTTS": "true", "TTS_MAX_INPUT_CHARS": "2000", "XTTS_PORT": "9020"}
    plan = plan_for(env, layout)
    assert names(plan) == ["redis", "xtts", "xtts-worker", "uploader", "gateway"]
    server, worker = plan.program("xtts"), plan.program("xtts-worker")
    assert server.argv[1:] == ("serve",) and worker.argv[1:] == ("worker",)
    assert server.argv[0].endswith(".venvs/xtts/bin/genstack-xtts")
    assert server.env["XTTS_PORT"] == "9020"
    assert server.env["XTTS_HOST"] == "127.0.0.1"
    assert server.env["XTTS_DEVICE"] == "cpu"
    assert server.env["XTTS_MODEL_DIR"] == str(tmp_path / "data" / "models" / "xtts")
    assert "TTS_MAX_INPUT_CHARS" not in server.env  # the user's value is inherited as it is
    assert "CUDA_VISIBLE_DEVICES" not in server.env
    assert worker.env["XTTS_URL"] == "http://127.0.0.1:9020"
    assert worker.health.url == "http://127.0.0.1:9102/readyz"
    gateway = plan.program("gateway")
    assert gateway.env["XTTS_URL"] == "http://127.0.0.1:9020"
    assert gateway.env["GATEWAY_ENABLED_BACKENDS"] == "xtts"
    assert plan.engines == ["xtts"]


def test_the_users_own_model_dir_and_listen_address_win(layout: MakeLayout) -> None:
    env = {"ENABLE_XTTS": "true", "XTTS_MODEL_DIR": "/models/mine", "XTTS_HOST": "0.0.0.0"}
    server = plan_for(env, layout).program("xtts")
    assert "XTTS_MODEL_DIR" not in server.env and "XTTS_HOST" not in server.env


def test_several_gpus_get_one_server_and_one_worker_per_engine_each(layout: MakeLayout) -> None:
    gpus = GpuInfo(devices=(gpu(0), gpu(1)))
    plan = plan_for({"ENABLE_XTTS": "true", "ENABLE_CHATTERBOX": "true"}, layout, gpus)
    assert names(plan) == [
        "redis",
        "xtts-gpu0",
        "xtts-worker-gpu0",
        "xtts-gpu1",
        "xtts-worker-gpu1",
        "chatterbox-gpu0",
        "chatterbox-worker-gpu0",
        "chatterbox-gpu1",
        "chatterbox-worker-gpu1",
        "uploader",
        "gateway",
    ]
    for engine, port in (("xtts", 8020), ("chatterbox", 8004)):
        for ordinal in (0, 1):
            server = plan.program(f"{engine}-gpu{ordinal}")
            worker = plan.program(f"{engine}-worker-gpu{ordinal}")
            # Pinned by UUID; each worker feeds its own server, all from the one queue.
            assert server.env["CUDA_VISIBLE_DEVICES"] == gpu(ordinal).uuid
            assert server.gpu == gpu(ordinal)
            assert server.health.port == port + ordinal
            assert worker.env[f"{engine.upper()}_URL"] == f"http://127.0.0.1:{port + ordinal}"
            assert worker.gpu is None and "CUDA_VISIBLE_DEVICES" not in worker.env
    ports = [p.health.port for p in plan.programs]
    assert len(ports) == len(set(ports)), "two programs share a port"
    # Interactive speech goes to the first GPU's server; the gateway serves both engines.
    gateway = plan.program("gateway")
    assert gateway.env["XTTS_URL"] == "http://127.0.0.1:8020"
    assert gateway.env["CHATTERBOX_URL"] == "http://127.0.0.1:8004"
    assert gateway.env["GATEWAY_ENABLED_BACKENDS"] == "xtts,chatterbox"


def test_cuda_visible_devices_picks_the_gpus() -> None:
    gpus = GpuInfo(devices=(gpu(0), gpu(1), gpu(2)))
    assert gpu_slots(gpus, None) == [gpu(0), gpu(1), gpu(2)]
    assert gpu_slots(gpus, "2,0") == [gpu(2), gpu(0)]
    assert gpu_slots(gpus, "GPU-00000001") == [gpu(1)]
    assert gpu_slots(gpus, "-1") == []
    assert gpu_slots(gpus, "") == []
    assert gpu_slots(NO_GPU, None) == []


def test_one_gpu_keeps_the_compose_names(layout: MakeLayout) -> None:
    plan = plan_for({"ENABLE_XTTS": "true"}, layout, GpuInfo(devices=(gpu(3),)))
    assert names(plan) == ["redis", "xtts", "xtts-worker", "uploader", "gateway"]
    server = plan.program("xtts")
    assert server.env["CUDA_VISIBLE_DEVICES"] == gpu(3).uuid
    assert "XTTS_DEVICE" not in server.env  # auto: the GPU


def test_an_engine_missing_from_the_checkout_is_left_out_with_one_message(
    layout: MakeLayout, checkout: Path
) -> None:
    (checkout / "services" / "chatterbox").rmdir()
    (checkout / ".venvs" / "chatterbox" / "bin" / "genstack-chatterbox").unlink()
    env = {"ENABLE_XTTS": "true", "ENABLE_CHATTERBOX": "true"}
    plan = plan_for(env, layout, check=True)
    assert [str(p) for p in plan.problems] == [
        "chatterbox: chatterbox is not in this checkout (no services/chatterbox): unset "
        "ENABLE_CHATTERBOX, or update the checkout"
    ]
    assert not plan.fatal
    assert not any("chatterbox" in name for name in names(plan))
    assert plan.program("gateway").env["GATEWAY_ENABLED_BACKENDS"] == "xtts"
    assert plan.engines == ["xtts"]


def test_an_engine_not_yet_installed_says_which_make_target(
    layout: MakeLayout, checkout: Path
) -> None:
    (checkout / ".venvs" / "xtts" / "bin" / "genstack-xtts").unlink()
    plan = plan_for({"ENABLE_XTTS": "true"}, layout, check=True)
    assert [str(p) for p in plan.problems] == [
        "xtts: xtts is not installed: run `make env-xtts` (make up does)"
    ]


def test_comfyui_turns_on_with_a_checkout_and_needs_an_interpreter_with_torch(
    layout: MakeLayout, comfyui_checkout: Path, tmp_path: Path
) -> None:
    # A ComfyUI checkout named is enough to turn it on; the interpreter must have torch.
    env = {"COMFYUI_DIR": str(comfyui_checkout), "COMFYUI_PYTHON": sys.executable}
    plan = plan_for(env, layout, check=True)
    assert [str(p) for p in plan.problems] == [
        f"comfyui: COMFYUI_PYTHON={sys.executable} has no torch: install ComfyUI's "
        "requirements into it (pip install -r requirements.txt in the checkout)"
    ]
    # An interpreter that finds a torch package.
    site = tmp_path / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("")
    python = tmp_path / "python-with-torch"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    env["COMFYUI_PYTHON"] = str(python)
    plan = plan_for(env, layout, check=True)
    assert plan.problems == []
    server, worker = plan.program("comfyui"), plan.program("comfyui-worker")
    assert server.argv[1:] == ("start",)
    assert server.env["COMFYUI_PYTHON"] == str(python)
    assert server.env["COMFYUI_LISTEN"] == "127.0.0.1"
    assert server.env["MODELS_DIR"] == str(tmp_path / "data" / "models")
    assert worker.env["COMFYUI_URL"] == f"http://127.0.0.1:{server.health.port}"
    assert plan.program("gateway").env["GATEWAY_ENABLED_BACKENDS"] == "comfyui"


def test_comfyui_asked_for_without_a_checkout_says_what_to_set(
    layout: MakeLayout, tmp_path: Path
) -> None:
    plan = plan_for({"ENABLE_COMFYUI": "true", "COMFYUI_DIR": str(tmp_path)}, layout, check=True)
    [problem] = plan.problems
    assert problem.service == "comfyui" and not problem.fatal
    assert f"COMFYUI_DIR={tmp_path} has no main.py" in problem.message
    assert "ENABLE_COMFYUI=false" in problem.message
    assert names(plan) == ["redis", "uploader", "gateway"]


def test_a_port_in_use_leaves_an_engine_out_and_stops_a_core_service(
    layout: MakeLayout,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        plan = plan_for({"ENABLE_XTTS": "true", "XTTS_PORT": str(port)}, layout, check=True)
        assert [str(p) for p in plan.problems if p.service == "xtts"] == [
            f"xtts: port {port} is in use (another genstack or another program): stop that, "
            "or set XTTS_PORT to a free port"
        ]
        assert "xtts-worker" not in names(plan)
        assert plan.program("gateway").env["GATEWAY_ENABLED_BACKENDS"] == ","
        plan = plan_for({"GATEWAY_PORT": str(port)}, layout, check=True)
        assert [p.service for p in plan.fatal] == ["gateway"]


def test_no_redis_server_and_no_redis_url_cannot_start(
    layout: MakeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    settings = DeploySettings.from_env({var: str(free_port()) for var in PORT_VARS})
    plan = make_plan(settings, layout(), NO_GPU, {}, check=True)
    [problem] = plan.fatal
    assert problem.service == "redis"
    assert "apt-get install redis-server" in problem.message and "REDIS_URL" in problem.message


# --- the pod ---------------------------------------------------------------------------


def test_storage_mode_decides_where_models_live_in_the_pod(tmp_path: Path) -> None:
    def layout(env: dict[str, str], mounted: bool) -> tuple[Path, Path]:
        made = pod_layout(DeploySettings.from_env(env), volume_mounted=mounted, as_root=True)
        return made.data_dir, made.models_dir

    # auto: the volume when one is mounted, the container disk when not.
    assert layout({}, True) == (Path("/workspace/genstack"), Path("/workspace/genstack/models"))
    assert layout({}, False) == (Path("/data"), Path("/data/models"))
    # ephemeral: models on the container disk even with a volume (state stays on it).
    assert layout({"STORAGE_MODE": "ephemeral"}, True) == (
        Path("/workspace/genstack"),
        Path("/data/models"),
    )
    assert layout({"STORAGE_MODE": "persistent"}, True)[1] == Path("/workspace/genstack/models")
    assert layout({"MODELS_DIR": str(tmp_path)}, True)[1] == tmp_path


def test_the_pod_runs_genstack_as_its_user_and_its_tools_as_root(tmp_path: Path) -> None:
    venvs = tmp_path / "venvs"
    install(venvs, "gateway", "uploader", "xtts", "comfyui", "deploy")
    (tmp_path / "main.py").write_text("")  # the image's ComfyUI checkout
    env = {
        "ENABLE_XTTS": "true",
        "ENABLE_CHATTERBOX": "true",
        "PUBLIC_KEY": "ssh-ed25519 AAAA test@example",
        "JUPYTER_PASSWORD": "secret-password",
        "COMFYUI_DIR": str(tmp_path),
    }
    settings = DeploySettings.from_env(env)
    layout = pod_layout(settings, volume_mounted=True, as_root=True)
    layout = type(layout)(**{**layout.__dict__, "venvs": venvs, "data_dir": tmp_path / "d"})
    plan = make_plan(settings, layout, NO_GPU, env, check=False, redis_server=REDIS)
    tools = {p.name: p for p in plan.programs if p.role is None}
    assert set(tools) == {"sshd", "jupyter"}
    assert all(p.user is None for p in tools.values())  # as supervisord: root
    assert all(p.user == "genstack" for p in plan.programs if p.role is not None)
    assert all(p.env.get("HOME") == "/home/genstack" for p in plan.programs if p.role)
    jupyter = tools["jupyter"]
    assert jupyter.env_from == {"JUPYTER_TOKEN": "JUPYTER_PASSWORD"}
    assert "secret-password" not in " ".join(jupyter.argv)
    # Without RUNPOD_POD_ID (not on RunPod) the links name the address each request came to.
    assert "GATEWAY_PUBLIC_URL" not in plan.program("gateway").env
    on_runpod = make_plan(settings, layout, NO_GPU, {**env, "RUNPOD_POD_ID": "abc123"}, check=False)
    assert on_runpod.program("gateway").env["GATEWAY_PUBLIC_URL"] == (
        "https://abc123-8080.proxy.runpod.net"
    )
    # ComfyUI's UI is the seed's, on 8188 for RunPod's proxy; the model servers stay local.
    assert plan.program("comfyui").env["COMFYUI_LISTEN"] == "0.0.0.0"
    assert plan.program("xtts").env["XTTS_HOST"] == "127.0.0.1"
    # This pod has no chatterbox venv: said once, the rest runs.
    checked = make_plan(settings, layout, NO_GPU, env, check=True, redis_server=REDIS)
    assert [str(p) for p in checked.problems if p.service == "chatterbox"] == [
        f"chatterbox: chatterbox is not installed in this image "
        f"({venvs}/chatterbox/bin/genstack-chatterbox)"
    ]


def test_jupyter_asked_for_without_a_password_is_refused_once(tmp_path: Path) -> None:
    settings = DeploySettings.from_env({"ENABLE_JUPYTER": "true"})
    layout = pod_layout(settings, volume_mounted=False, as_root=True)
    plan = make_plan(settings, layout, NO_GPU, {}, check=False, redis_server=REDIS)
    assert [p.service for p in plan.problems] == ["jupyter"]
    assert "JUPYTER_PASSWORD" in plan.problems[0].message
    assert "jupyter" not in names(plan)
