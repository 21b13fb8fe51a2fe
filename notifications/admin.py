from django.contrib import admin

from notifications.models import Notification, NotificationPreference


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "kind",
        "message",
        "created_at",
        "read_at",
        "emailed_at",
        "email_failed_at",
    )
    list_filter = ("kind",)
    raw_id_fields = ("user", "encounter", "individual")


admin.site.register(NotificationPreference)
