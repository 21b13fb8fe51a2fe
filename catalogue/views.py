from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from catalogue import selectors
from catalogue.forms import SignUpForm
from catalogue.photos import photo_read
from catalogue.roles import UPLOAD_PERMISSION
from catalogue.services import accounts, sightings
from wildweb.errors import ServiceError


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "catalogue/home.html", {"species": selectors.public_species_list()})


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
