# Type stubs of the compiled module (python/src/lib.rs).
from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str

class NativeResult:
    def summary_json(self) -> str: ...
    def coords(self) -> Dict[str, Dict[str, np.ndarray]]: ...
    def table(self) -> str: ...
    def save(self, out: Union[str, PathLike[str]]) -> None: ...

def analyze_arrays(
    arrays: Sequence[Tuple[str, np.ndarray, bool]],
    center: str,
    block: Optional[int],
    backend: str,
    batch_size: Optional[int],
) -> NativeResult: ...
def analyze_files(
    paths: Sequence[Union[str, PathLike[str]]],
    center: str,
    block: Optional[int],
    backend: str,
    batch_size: Optional[int],
) -> NativeResult: ...
