"""Store keypoint blobs without TOAST compression.

Descriptors are quantised numbers that pglz cannot shrink, yet Postgres tries on every blob
over 2 kB: writing a batch of dog keypoints took 6.5 ms a photo with the attempt and 2.8 ms
without (benchmarks/identification/keypoint_storage.py, BENCHMARKS.md issue 12). EXTERNAL keeps them out of line, uncompressed.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("identification", "0010_model_version_compaction")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE identification_localfeatures ALTER COLUMN data SET STORAGE EXTERNAL",
            reverse_sql=(
                "ALTER TABLE identification_localfeatures ALTER COLUMN data SET STORAGE EXTENDED"
            ),
        )
    ]
