from django.urls import path

from notifications import views

urlpatterns = [
    path("", views.notification_list, name="notifications"),
    path("read/", views.notifications_read, name="notifications-read"),
    path("settings/", views.notification_preferences, name="notification-preferences"),
]
