from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.throttling import BaseThrottle

from catalogue import selectors
from catalogue.forms import SignUpForm
from catalogue.photos import photo_read
from catalogue.roles import UPLOAD_PERMISSION
from catalogue.services import accounts, sightings
from wildweb.errors import ServiceError


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "catalogue/home.html", {"species": selectors.public_species_list()})


def login_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A login view that answers 429 once an address or a username failed too often.

    Wraps both the site's and the admin's login page, so neither can be used to guess.
    """

    @functools.wraps(view)
    def throttled(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        # The address the API throttles use too: REMOTE_ADDR, or X-Forwarded-For behind
        # NUM_PROXIES proxies.
        client_address = BaseThrottle().get_ident(request)
        username = request.POST.get("username", "")
        if accounts.login_blocked(client_address=client_address, username=username):
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            response = HttpResponse(
                f"Too many failed sign-ins. Try again in up to {minutes} minutes.",
                status=429,
                content_type="text/plain",
            )
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
            return response
        response = view(request, *args, **kwargs)
        # Someone already signed in who guesses another account's password still fails.
        signed_in_as = request.user.get_username() if request.user.is_authenticated else None
        if signed_in_as is not None and signed_in_as.lower() == username.strip().lower():
            accounts.login_failures_clear(username=username)
        else:
            accounts.login_failure_record(client_address=client_address, username=username)
        return response

    return throttled


def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = accounts.user_signup(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        login(request, user)
        messages.success(request, "Welcome! You can now report sightings.")
        return redirect("sighting-create")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@permission_required(UPLOAD_PERMISSION, raise_exception=True)
@require_POST
def photo_exif(request: HttpRequest) -> JsonResponse:
    """Date and place stored in a photo, to prefill the upload form."""
    file = request.FILES.get("photo")
    if file is None:
        return JsonResponse({"detail": "No photo was sent."}, status=400)
    try:
        upload = sightings.uploaded_photo_from_file(file=file)
        photo = photo_read(
            data=upload.data,
            filename=upload.filename,
            max_bytes=settings.MAX_UPLOAD_BYTES,
            max_pixels=settings.MAX_IMAGE_PIXELS,
        )
    except ServiceError as error:
        return JsonResponse({"detail": error.message}, status=400)
    return JsonResponse(
        {
            "observed_at": photo.taken_at.strftime("%Y-%m-%dT%H:%M") if photo.taken_at else None,
            "latitude": photo.latitude,
            "longitude": photo.longitude,
            "width": photo.width,
            "height": photo.height,
        }
    )
