"""The router is pure Python: no torch, no numpy; a small, pinned public surface;
small modules without stubs."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import router

ROUTER = Path(router.__file__).parent


def test_importing_router_and_every_submodule_imports_no_torch_or_numpy():
    code = (
        "import pkgutil, sys, importlib, router\n"
        "for m in pkgutil.iter_modules(router.__path__): importlib.import_module('router.' + m.name)\n"
        "heavy = sorted(n for n in sys.modules if n.split('.')[0] in {'torch', 'numpy'})\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_surface_is_pinned_and_sorted():
    assert router.__all__ == sorted(router.__all__)
    assert router.__all__ == [
        "AuditLog", "AuditSettings", "BUILTIN_DETECTORS", "CloudRules", "ConfidenceRule", "CustomDetector",
        "DETECTORS", "Decision", "DecisionRecord", "EdgeLimits", "EscalationAction", "Fallback", "Finding",
        "HandoffChoice", "KVHandoffRules", "KVOffer", "MonitorVerdict", "Policy", "PolicyError", "PrefillSpeeds",
        "PrivacyRules", "Problem", "Reason", "Redaction", "Restorer",
        "Route", "SCHEMA", "Signal", "StreamMonitor", "TagAction", "choose_continuation", "choose_prefill", "decide", "detect", "load_policy", "parse_policy",
    ]
    for name in router.__all__:
        assert hasattr(router, name), name


def test_modules_are_small_and_hold_no_stubs():
    for module in pkgutil.iter_modules(router.__path__):
        source = (ROUTER / f"{module.name}.py").read_text(encoding="utf-8")
        assert len(source.splitlines()) <= 400, module.name
        for marker in ("TODO", "FIXME", "NotImplementedError"):
            assert marker not in source, (module.name, marker)
