"""Reliability: bad input never crashes a run or loses work (issue 6). The cases are listed in docs/reliability.md."""
