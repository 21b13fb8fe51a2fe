"""Every candidate stores the score its ranking method ordered it by.

The review ordered a sighting's candidates by the calibrated probability (``fused_score``)
while the search and ``evaluate`` order by the method's score; for the hand-set fusion the
two disagree. Existing rows get the score of their species' method from their stored cosine
and inliers, as the review ranked them until now; a search that matched no keypoints was
ranked by the embedding, so its rows keep the cosine.
"""

from django.db import migrations, models

BATCH = 2000


def scores_backfill(apps, schema_editor) -> None:  # noqa: ANN001
    from reid.fusion import FusionCalibrator
    from reid.ranking import EMBEDDING, NEEDS_LOCAL, method_score

    MatchCandidate = apps.get_model("identification", "MatchCandidate")
    SpeciesModel = apps.get_model("identification", "SpeciesModel")
    settings = {s.species_id: s for s in SpeciesModel.objects.all()}
    rows = (
        MatchCandidate.objects.select_related("identification__annotation")
        .order_by("identification_id", "rank")
        .iterator(chunk_size=BATCH)
    )
    batch: list = []
    for row in rows:
        setting = settings.get(row.identification.annotation.species_id)
        method, calibrator = "fused", None
        if setting is not None:
            method = setting.ranking_method
            # SpeciesModel.is_calibrated (historical models have no properties).
            if (
                setting.calibration
                and setting.calibration_version_id == setting.model_version_id
                and setting.calibration.get("local_method", "sift") == setting.local_method
            ):
                calibrator = FusionCalibrator.from_dict(setting.calibration)
        if method in NEEDS_LOCAL and row.inlier_count is None:
            method = EMBEDDING
        row.score = method_score(method, row.embedding_score, row.inlier_count, calibrator)
        batch.append(row)
        if len(batch) >= BATCH:
            MatchCandidate.objects.bulk_update(batch, ["score"])
            batch = []
    MatchCandidate.objects.bulk_update(batch, ["score"])


class Migration(migrations.Migration):
    dependencies = [("identification", "0011_local_features_uncompressed")]

    operations = [
        migrations.AddField(
            model_name="matchcandidate",
            name="score",
            field=models.FloatField(
                default=0.0,
                help_text="What the species' ranking method orders by "
                "(reid.ranking.method_score); the review ranks a sighting's photos by it.",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(scores_backfill, migrations.RunPython.noop),
    ]
