from django.contrib import admin

from training.models import TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "species", "mode", "engine_mode", "status", "progress", "created_at"]
    list_filter = ["status", "mode", "species"]
    readonly_fields = ["report", "history", "log"]
