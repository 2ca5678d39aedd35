"""docker-compose.yml against the code it runs: its commands parse with our CLI and its
health check reports a real server's state. (CI also runs `docker-compose config`.)"""

from __future__ import annotations

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
