"""docker-compose.yml against the code it runs: its commands parse with our CLI and its
health check reports a real server's state. (CI also runs `docker-compose config`.)"""

from __future__ import annotations

import grpc
import pytest
import yaml

from cloud.healthcheck import serving
from edge.demo import dead_address
from tandem.cli import build_parser
from tests.cloud_fixtures import running_server
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.mark.parametrize("service", ["cloud", "edge", "serve-edge"])
def test_service_command_is_a_valid_tandem_command(service):
    command = COMPOSE["services"][service]["command"]
    assert command[0] == "tandem"
    args = build_parser().parse_args(command[1:])
    assert args.command == {"cloud": "serve-cloud", "edge": "demo", "serve-edge": "serve-edge"}[service]


def test_serve_edge_reaches_the_cloud_and_is_published_where_it_listens():
    service = COMPOSE["services"]["serve-edge"]
    assert service["depends_on"]["cloud"]["condition"] == "service_healthy"
    args = build_parser().parse_args(service["command"][1:])
    cloud_args = build_parser().parse_args(COMPOSE["services"]["cloud"]["command"][1:])
    assert args.cloud == f"cloud:{cloud_args.port}" and args.host == "0.0.0.0"
    assert service["ports"] == [f"127.0.0.1:{args.port}:{args.port}"]  # loopback only: it may run without a key
    assert f"127.0.0.1:{args.port}/health" in service["healthcheck"]["test"][-1]


def test_edge_waits_for_a_healthy_cloud_it_can_reach():
    edge = COMPOSE["services"]["edge"]
    assert edge["depends_on"]["cloud"]["condition"] == "service_healthy"
    cloud_args = build_parser().parse_args(COMPOSE["services"]["cloud"]["command"][1:])
    edge_args = build_parser().parse_args(edge["command"][1:])
    assert edge_args.cloud == f"cloud:{cloud_args.port}" and cloud_args.host == "0.0.0.0"
    probe = COMPOSE["services"]["cloud"]["healthcheck"]["test"]
    assert probe[1:4] == ["python", "-m", "cloud.healthcheck"] and probe[4].endswith(f":{cloud_args.port}")


def test_healthcheck_reports_a_real_server(smollm2):
    with running_server(smollm2) as (_, port):
        assert serving(f"127.0.0.1:{port}")
    assert not serving(dead_address(), timeout=1.0)


SCALE = yaml.safe_load((REPO / "docker-compose.scale.yml").read_text())
ENVOY = yaml.safe_load((REPO / "deploy" / "envoy.yaml").read_text())
GATEWAYS = ("gateway-1", "gateway-2")


@pytest.mark.parametrize("service", GATEWAYS)
def test_scale_gateways_are_valid_serve_cloud_commands_on_the_engine_service(service):
    command = SCALE["services"][service]["command"]
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.engine, args.host) == ("serve-cloud", "vllm", "0.0.0.0")
    engine = SCALE["services"]["vllm"]["command"]
    assert args.engine_url == f"http://vllm:{engine[engine.index('--port') + 1]}"
    assert args.model == engine[engine.index("--model") + 1]  # the same folder: the tokenizer check can pass
    assert SCALE["services"][service]["depends_on"]["vllm"]["condition"] == "service_healthy"


def test_the_balancer_hashes_sessions_onto_the_gateway_replicas_and_health_checks_them():
    from cloud.client import SESSION_HEADER
    from cloud.server import SERVICE_NAME

    cluster = ENVOY["static_resources"]["clusters"][0]
    endpoints = [e["endpoint"]["address"]["socket_address"]
                 for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    ports = {s: build_parser().parse_args(SCALE["services"][s]["command"][1:]).port for s in GATEWAYS}
    assert {(e["address"], e["port_value"]) for e in endpoints} == set(ports.items())
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == SERVICE_NAME
    manager = ENVOY["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["hash_policy"][0]["header"]["header_name"] == SESSION_HEADER
    assert "./deploy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in SCALE["services"]["balancer"]["volumes"]


def test_the_sdk_names_its_session_in_a_header_the_balancer_can_hash(smollm2):
    from cloud.client import SESSION_HEADER
    seen = []

    class Headers(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            seen.append(dict(details.invocation_metadata))
            return await continuation(details)

    from cloud.client import CloudClient

    with running_server(smollm2, interceptors=[Headers()]) as (_, port), CloudClient(f"127.0.0.1:{port}") as c:
        c.generate([1, 2, 3], max_new_tokens=1, session_id="conv-42")
        c.generate([1, 2, 3], max_new_tokens=1)
    assert seen[-2][SESSION_HEADER] == "conv-42" and SESSION_HEADER not in seen[-1]
