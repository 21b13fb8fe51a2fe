from django.urls import path

from notifications import views

urlpatterns = [
    path("", views.notification_list, name="notifications"),
    path("settings/", views.notification_preferences, name="notification-preferences"),
]
