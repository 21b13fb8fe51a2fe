"""Reading a dataset's JSON file (COCO, CCT, MegaDetector), whatever its text encoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reid.schema import SchemaError, decode_text
from wildweb.errors import ServiceError


def json_load(path: Path) -> Any:
    try:
        text = decode_text(path.read_bytes(), path.name)
        # NaN and Infinity (not JSON, but Python writes them) reach the box check, which
        # names the entry that holds them.
        return json.loads(text)
    except OSError as error:
        raise ServiceError(f"Cannot open {path.name}: {error.strerror}.") from None
    except SchemaError as error:
        raise ServiceError(f"{error}.") from None
    except json.JSONDecodeError as error:
        raise ServiceError(
            f"{path.name}: line {error.lineno}, column {error.colno}: {error.msg}."
        ) from None
