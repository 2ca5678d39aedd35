"""Version 1 of the contract: `from tandem_rpc.v1 import cloud_pb2, cloud_pb2_grpc`."""
