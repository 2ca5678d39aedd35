"""The committed gRPC stubs are exactly what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATED = ("cloud_pb2.py", "cloud_pb2.pyi", "cloud_pb2_grpc.py")


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True, capture_output=True, timeout=120,
    )
    stale = [
        name for name in GENERATED
        if (tmp_path / "tandem_rpc" / "v1" / name).read_bytes()
        != (REPO / "tandem_rpc" / "v1" / name).read_bytes()
    ]
    assert not stale, f"stubs out of date with proto/: {stale}; run `python scripts/gen_proto.py` and commit"


def test_generated_stubs_use_package_imports():
    grpc_module = (REPO / "tandem_rpc" / "v1" / "cloud_pb2_grpc.py").read_text()
    assert "from tandem_rpc.v1 import cloud_pb2" in grpc_module


def test_kv_handoff_field_numbers_are_reserved():
    from google.protobuf import descriptor_pb2

    from tandem_rpc.v1 import cloud_pb2

    for message in (cloud_pb2.GenerateRequest, cloud_pb2.GenerateResponse, cloud_pb2.InfoResponse):
        proto = descriptor_pb2.DescriptorProto()
        message.DESCRIPTOR.CopyToProto(proto)
        assert proto.reserved_range, f"{message.DESCRIPTOR.name} reserves no field numbers for the KV hand-off"


def test_kv_handoff_rpcs_are_in_the_contract():
    from tandem_rpc.v1 import cloud_pb2

    methods = cloud_pb2.DESCRIPTOR.services_by_name["CloudInference"].methods_by_name
    assert methods["UploadKV"].client_streaming and not methods["UploadKV"].server_streaming
    assert methods["ResumeFromKV"].server_streaming and methods["PrefillKV"].server_streaming
