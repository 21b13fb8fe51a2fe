import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Calibration belongs to a model version; the local method is a species setting; the
    keypoint cache holds one row per annotation and method (it is a cache: rebuilt lazily)."""

    dependencies = [
        ("catalogue", "0001_initial"),
        ("identification", "0007_individual_merge_remembers_visibility"),
    ]

    operations = [
        migrations.AddField(
            model_name="speciesmodel",
            name="local_method",
            field=models.CharField(
                choices=[("sift", "rootSIFT"), ("xfeat", "XFeat + LighterGlue")],
                default="sift",
                help_text="Keypoints that re-score the shortlist.",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="speciesmodel",
            name="calibration_version",
            field=models.ForeignKey(
                blank=True,
                help_text="The model version the calibration and threshold were fitted under.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="identification.modelversion",
            ),
        ),
        migrations.AlterField(
            model_name="speciesmodel",
            name="calibration",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Fitted calibration; empty means the hand-set one.",
            ),
        ),
        migrations.AlterField(
            model_name="speciesmodel",
            name="new_individual_threshold",
            field=models.FloatField(
                default=0.5,
                help_text="Below this probability of the first candidate the animal is "
                "probably new.",
            ),
        ),
        migrations.AlterField(
            model_name="speciesmodel",
            name="ranking_method",
            field=models.CharField(
                choices=[
                    ("embedding", "Embedding similarity"),
                    ("local", "Local keypoint matching"),
                    ("fused", "Embedding and keypoints fused (hand-set)"),
                    ("calibrated", "Embedding and keypoints fused (calibrated)"),
                ],
                default="fused",
                max_length=10,
            ),
        ),
        # Old calibrations are a different model (one two-feature logistic); drop them.
        migrations.RunSQL(
            "UPDATE identification_speciesmodel SET calibration = '{}'::jsonb",
            migrations.RunSQL.noop,
        ),
        migrations.DeleteModel(name="LocalFeatures"),
        migrations.CreateModel(
            name="LocalFeatures",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("method", models.CharField(default="sift", max_length=10)),
                ("data", models.BinaryField()),
                ("keypoint_count", models.PositiveIntegerField()),
                (
                    "annotation",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="local_features",
                        to="catalogue.annotation",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("annotation", "method"),
                        name="one_local_features_per_annotation_method",
                    )
                ]
            },
        ),
    ]
