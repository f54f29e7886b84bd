"""Handing freed heap back, and keeping it for reuse: what each does to a process, measured in a fresh one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_ALLOCATE_AGAIN_AND_AGAIN = """
    import json, resource
    import numpy as np
    from leadscore.heap import reuse_freed_heap
    took = reuse_freed_heap() if {reuse} else None
    np.ones(4 << 20)  # 32 MB once: the pages a reused heap keeps
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        np.ones(4 << 20).sum()  # 32 MB allocated, written and freed, as a scoring chunk's arrays
    print(json.dumps({{"took": took, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}}))
"""


def _faults(reuse: bool) -> dict[str, object]:
    code = textwrap.dedent(_ALLOCATE_AGAIN_AND_AGAIN.format(reuse=reuse))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_reused_heap_maps_the_same_arrays_once_not_every_time() -> None:
    """After reuse_freed_heap, arrays allocated and freed again and again fault their pages in far less often."""
    fresh, reused = _faults(reuse=False), _faults(reuse=True)
    assert reused["took"] is True
    assert int(str(reused["faults"])) * 4 < int(str(fresh["faults"]))
