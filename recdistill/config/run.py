"""The top-level run configuration: one section per component."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recdistill.config.data import DataConfig
from recdistill.config.distill import DistillLossConfig
from recdistill.config.gbdt import GbdtStudentConfig
from recdistill.config.loader import from_mapping, load_yaml
from recdistill.config.loadtest import LoadTestConfig
from recdistill.config.report import ReportConfig
from recdistill.config.search import SearchConfig
from recdistill.config.serving import ServingConfig
from recdistill.config.soft_labels import SoftLabelConfig
from recdistill.config.students import MlpStudentConfig
from recdistill.config.teacher import TeacherConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything ``recdistill run`` needs. ``run_dir`` holds every artefact of the run."""

    run_dir: str = "runs/demo"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    soft_labels: SoftLabelConfig = field(default_factory=SoftLabelConfig)
    student_mlp: MlpStudentConfig = field(default_factory=MlpStudentConfig)
    distill: DistillLossConfig = field(default_factory=DistillLossConfig)
    gbdt: GbdtStudentConfig = field(default_factory=GbdtStudentConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    loadtest: LoadTestConfig = field(default_factory=LoadTestConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def load_config(path: str | Path) -> RunConfig:
    return from_mapping(RunConfig, load_yaml(path), source=str(path))
