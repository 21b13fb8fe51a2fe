"""Volunteers' sightings: the upload form, a sighting's page, their list, and the photo files.

They live here, not in the catalogue, because each shows or starts identification: an upload
queues the search, a sighting's status is what identification made of it, and a reviewer may
see the photos of the animals waiting in the review queue.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from catalogue.coordinates import encounter_coordinates
from catalogue.forms import SightingForm
from catalogue.roles import UPLOAD_PERMISSION
from catalogue.selectors import sighting_poll_seconds, sighting_visible_to, volunteer_contributions
from catalogue.services.sightings import uploaded_photo_from_file
from identification.selectors.backlog import interactive_wait
from identification.selectors.sightings import (
    image_visible_to,
    sighting_statuses,
    volunteer_sightings,
)
from identification.services.pipeline import sighting_submit
from wildweb.errors import ServiceError


@login_required
@permission_required(UPLOAD_PERMISSION, raise_exception=True)
def sighting_create(request: HttpRequest) -> HttpResponse:
    form = SightingForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        boxes = data["bboxes"]
        try:
            photos = [
                uploaded_photo_from_file(
                    file=file, bbox=boxes[index] if index < len(boxes) else None
                )
                for index, file in enumerate(data["photos"])
            ]
            result = sighting_submit(
                submitted_by=request.user,
                species=data["species"],
                photos=photos,
                observed_at=data["observed_at"],
                latitude=data["latitude"],
                longitude=data["longitude"],
                notes=data["notes"],
                viewpoint=data["viewpoint"],
            )
        except ServiceError as error:
            shown = error.field in form.fields and not form.fields[error.field].widget.is_hidden
            form.add_error(error.field if shown else None, error.message)
        else:
            for message in result.messages:
                messages.info(request, message)
            if result.encounter is None:
                own = result.duplicates[0].sighting_id
                if own is not None:
                    return redirect("sighting-detail", encounter_id=own)
                return redirect("my-sightings")
            messages.success(request, f"Thank you! Sighting #{result.encounter.pk} was saved.")
            return redirect("sighting-detail", encounter_id=result.encounter.pk)
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "wait": interactive_wait()}
    return render(request, "catalogue/sighting_form.html", context, status=status)


@login_required
def sighting_detail(request: HttpRequest, encounter_id: int) -> HttpResponse:
    encounter = sighting_visible_to(user=request.user, encounter_id=encounter_id)
    if encounter is None:
        raise Http404("There is no sighting with this number that you may see.")
    # While something is pending the page asks for this part again (htmx) and swaps it in.
    template = (
        "catalogue/_sighting_live.html"
        if request.headers.get("HX-Request")
        else ("catalogue/sighting_detail.html")
    )
    return render(
        request,
        template,
        {
            "encounter": encounter,
            "row": sighting_statuses(encounters=[encounter])[0],
            "poll_seconds": sighting_poll_seconds(encounters=[encounter]),
            "coordinates": encounter_coordinates(encounter=encounter, user=request.user),
        },
    )


@login_required
def my_sightings(request: HttpRequest) -> HttpResponse:
    rows = volunteer_sightings(user=request.user)
    template = (
        "catalogue/_my_sightings_live.html"
        if request.headers.get("HX-Request")
        else ("catalogue/my_sightings.html")
    )
    return render(
        request,
        template,
        {
            "sightings": rows,
            "poll_seconds": sighting_poll_seconds(encounters=[r.encounter for r in rows]),
            "contributions": volunteer_contributions(user=request.user),
        },
    )


def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """A stored photo or thumbnail, to whoever may see the page it is on (else 404).

    Django streams it from the photo storage (the file system or the object store) when
    ``SERVE_MEDIA`` is on, and always with an object store; with ``SERVE_MEDIA`` off and the
    file system, the proxy sends it, told by ``X-Accel-Redirect`` (nginx, an ``internal``
    location) or ``X-Sendfile``.
    """
    image = image_visible_to(user=request.user, name=path)
    if image is None:
        raise Http404("There is no photo here, or it is not public.")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if settings.SERVE_MEDIA or not isinstance(default_storage, FileSystemStorage):
        try:
            stored = default_storage.open(path, "rb")
        except (FileNotFoundError, SuspiciousFileOperation):
            raise Http404("This photo's file is missing.") from None
        response: HttpResponse = FileResponse(stored, content_type=content_type)
    else:
        response = _media_proxy_response(path, content_type)
    # Browsers may keep it; shared caches must not, as not every photo is public.
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _media_proxy_response(path: str, content_type: str) -> HttpResponse:
    """An empty answer that tells the proxy which file under ``MEDIA_ROOT`` to send."""
    media_root = Path(settings.MEDIA_ROOT).resolve()
    file_path = (media_root / path).resolve()
    if not file_path.is_relative_to(media_root):
        raise Http404("There is no photo here.")
    response = HttpResponse(content_type=content_type)
    if settings.MEDIA_PROXY_HEADER == "X-Sendfile":
        response["X-Sendfile"] = str(file_path)
    else:
        response["X-Accel-Redirect"] = settings.MEDIA_PROXY_PREFIX + quote(path)
    return response
