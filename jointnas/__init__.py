"""jointnas: joint architecture + training-recipe search guided by an accuracy predictor (FBNetV3-style)."""
import warnings

# torchvision 0.29 scripts a few ops at import time, which torch 2.14 flags as deprecated;
# the warning is about torchvision's internals, not about anything a jointnas user can change.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .candidate import Candidate  # noqa: E402
from .data import Task, load_task, task_resolution  # noqa: E402
from .model import build_model  # noqa: E402
from .pool import sample_pool  # noqa: E402
from .proxies import Cost, count_cost, count_cost_fvcore, count_costs  # noqa: E402
from .space import Space, SpaceError, load_space  # noqa: E402
from .trainer import TrainResult, train  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Candidate", "Cost", "Space", "SpaceError", "build_model", "count_cost", "count_cost_fvcore",
           "count_costs", "load_space", "sample_pool", "Task", "load_task", "task_resolution", "TrainResult", "train"]
