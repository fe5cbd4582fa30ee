"""Report section: the latency budget a student must meet to be recommended."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportConfig:
    """The recommendation is the best-AUC student whose served p99 is at most ``target_p99_ms`` at
    ``rate`` requests/s (open loop, ``candidates`` rows per request, no errors). ``parity_rows``
    test rows are sent to every served model and compared with in-process predictions."""

    target_p99_ms: float = 10.0
    rate: float = 200.0
    parity_rows: int = 1024
    parity_atol: float = 1e-5
    find_capacity: bool = False
    title: str = "recdistill report"

    def __post_init__(self) -> None:
        if not self.target_p99_ms > 0 or not self.rate > 0:
            raise ValueError(f"target_p99_ms and rate must be > 0, got {self.target_p99_ms}, {self.rate}")
        if self.parity_rows < 1:
            raise ValueError(f"parity_rows must be >= 1, got {self.parity_rows}")
