"""Importing labelled photos: one plan type, one module per format, all or nothing.

An import is planned first (a dry run that opens every photo exactly as the import will and
writes nothing, listing every invalid entry with its location), then carried out in one
transaction. Values are parsed and checked by the ingestion schema, :mod:`reid.schema`.

==================  =====================================================================
module              holds
==================  =====================================================================
``plan``            :class:`ImportPlan`, :class:`ImportRow`; opening and checking photos
``csv_table``       ``metadata.csv`` (the shared dataset schema)
``coco``            COCO and COCO Camera Traps JSON
``megadetector``    MegaDetector batch output
``json_file``       reading a JSON file in any accepted text encoding
``folders``         one folder per individual
``archive``         unpacking a ZIP safely and finding its layout
``detect``          format detection; :func:`dataset_file_plan` for any file
``run``             :func:`dataset_import`
==================  =====================================================================
"""

from catalogue.services.imports.archive import LAYOUTS
from catalogue.services.imports.csv_table import dataset_plan
from catalogue.services.imports.detect import (
    FORMATS,
    dataset_file_plan,
    import_folder_remove,
    import_format_detect,
)
from catalogue.services.imports.plan import ImportPlan, ImportRow
from catalogue.services.imports.run import ImportResult, dataset_import

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "ImportPlan",
    "ImportResult",
    "ImportRow",
    "dataset_file_plan",
    "dataset_import",
    "dataset_plan",
    "import_folder_remove",
    "import_format_detect",
]
