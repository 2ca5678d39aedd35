"""Generated gRPC stubs for Tandem's wire contract (proto/tandem_rpc/).

Named `tandem_rpc`, not `proto`, because proto-plus owns that import name.
The stubs are made by scripts/gen_proto.py and never edited by hand.
"""
