"""Private by default: only photos a page may show are served, to the people who see that page.

Training exports, feature caches, models and import uploads live under PRIVATE_ROOT, which no
URL maps to; photos under MEDIA_ROOT pass a permission check on every request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalogue.models import Encounter
from identification.models import Identification, MatchCandidate, ModelVersion
from tests.factories import (
    AnnotationFactory,
    EncounterFactory,
    ImageFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
    ranked_photo,
)
from tests.helpers import every_url, jpeg_bytes
from training.models import TrainingRun
from training.services.storage import private_files_move_from_media
from training.services.training_data import run_directory
from training.services.uploads import dataset_upload_store

pytestmark = pytest.mark.django_db


def _client(role: str | None) -> Client:
    client = Client()
    if role:
        client.force_login(UserFactory(role=role))
    return client


def _media_url(name: str) -> str:
    return f"/{settings.MEDIA_URL.strip('/')}/{name}"


def _training_files(run_id: int) -> list[Path]:
    """The files a training run writes: manifest, metadata, a crop, a feature cache, a model."""
    directory = Path(settings.PRIVATE_ROOT) / "training" / f"run-{run_id}"
    files = {
        directory / "data" / "manifest.json": b'{"train_dirs": ["/srv/x"]}',
        directory / "data" / "train-chimp" / "metadata.csv": b"image_id,identity,path\n",
        directory / "data" / "chimp" / "images" / "17.jpg": jpeg_bytes(),
        directory / "model" / "cache" / "features-0.npy": b"\x93NUMPY",
        directory / "model" / "model.pt": b"weights",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(files)


def test_training_files_and_import_uploads_are_written_outside_media() -> None:
    token = dataset_upload_store(
        uploaded_file=SimpleUploadedFile("animals.csv", b"identity,path\nA,a.jpg\n")
    )
    upload = Path(settings.PRIVATE_ROOT) / "imports" / token / "animals.csv"
    assert upload.read_bytes().startswith(b"identity")
    media, private = Path(settings.MEDIA_ROOT).resolve(), Path(settings.PRIVATE_ROOT).resolve()
    assert run_directory(run=TrainingRun()).resolve().is_relative_to(private)
    assert not private.is_relative_to(media) and not media.is_relative_to(private)
    assert not list(media.rglob("*.csv"))


@pytest.mark.parametrize("role", [None, "volunteer"])
def test_private_files_are_not_served_under_any_url(role: str | None) -> None:
    private_files = _training_files(run_id=1)
    token = dataset_upload_store(uploaded_file=SimpleUploadedFile("upload.zip", b"PK\x05\x06"))
    private_files.append(Path(settings.PRIVATE_ROOT) / "imports" / token / "upload.zip")
    # The same files at their old place under MEDIA_ROOT are not served either: only photos are.
    for private in list(private_files):
        relative = private.relative_to(settings.PRIVATE_ROOT)
        legacy = Path(settings.MEDIA_ROOT) / relative
        legacy.parent.mkdir(parents=True, exist_ok=True)
        legacy.write_bytes(private.read_bytes())
        private_files.append(legacy)
    client = _client(role)
    for path in private_files:
        root = settings.PRIVATE_ROOT if path.is_relative_to(settings.PRIVATE_ROOT) else None
        relative = path.relative_to(root or settings.MEDIA_ROOT).as_posix()
        for url in (_media_url(relative), f"/private/{relative}", f"/{relative}"):
            response = client.get(url)
            assert response.status_code in (403, 404), (url, response.status_code)
    assert client.get(_media_url("../private/training/run-1/model/model.pt")).status_code == 404


def test_public_photo_is_served_to_anyone_and_a_private_one_only_to_experts() -> None:
    public = confirmed_sighting(individual=IndividualFactory())
    public.image.thumbnail.save("thumb.jpg", ContentFile(jpeg_bytes((32, 24))))
    secret = confirmed_sighting(individual=IndividualFactory(is_public=False))
    anonymous, volunteer, expert = _client(None), _client("volunteer"), _client("expert")
    for name in (public.image.file.name, public.image.thumbnail.name):
        response = anonymous.get(_media_url(name))
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        assert b"".join(response.streaming_content).startswith(b"\xff\xd8")
    assert anonymous.get(_media_url(secret.image.file.name)).status_code == 404
    assert volunteer.get(_media_url(secret.image.file.name)).status_code == 404
    assert expert.get(_media_url(secret.image.file.name)).status_code == 200


def test_unconfirmed_photo_is_served_to_its_uploader_reviewers_and_experts_only() -> None:
    uploader = UserFactory(role="volunteer")
    annotation = AnnotationFactory(
        image=ImageFactory(
            encounter=EncounterFactory(submitted_by=uploader, status=Encounter.Status.PROCESSING)
        )
    )
    name = annotation.image.file.name
    owner = Client()
    owner.force_login(uploader)
    other_volunteer, anonymous = _client("volunteer"), _client(None)
    assert owner.get(_media_url(name)).status_code == 200
    assert other_volunteer.get(_media_url(name)).status_code == 404
    assert anonymous.get(_media_url(name)).status_code == 404
    assert _client("expert").get(_media_url(name)).status_code == 200

    # Once it waits in the review queue, volunteers who vote see it and its candidates' photos.
    private_candidate = IndividualFactory(species=annotation.species, is_public=False)
    gallery = confirmed_sighting(individual=private_candidate)
    identification = Identification.objects.create(
        annotation=annotation, state=Identification.State.READY
    )
    MatchCandidate.objects.create(
        identification=identification,
        rank=1,
        individual=private_candidate,
        gallery_annotation=gallery,
        embedding_score=0.9,
        score=0.9,  # ranked by the embedding
        fused_score=0.9,
    )
    assert other_volunteer.get(_media_url(name)).status_code == 200
    assert other_volunteer.get(_media_url(gallery.image.file.name)).status_code == 200
    assert anonymous.get(_media_url(gallery.image.file.name)).status_code == 404


def _ranked_animal(*, queued: bool) -> MatchCandidate:
    """Another volunteer's sighting of one animal in two photos, each ranked against a private
    individual; the candidate returned rests on the second photo, which the queue does not list
    (it lists an animal by its first photo). Not queued: its review is over."""
    species = SpeciesFactory()
    encounter = EncounterFactory(species=species, submitted_by=UserFactory(role="volunteer"))
    ranked_photo(
        encounter=encounter, ranking=[(IndividualFactory(species=species, is_public=False), 0.4)]
    )
    second = ranked_photo(
        encounter=encounter, ranking=[(IndividualFactory(species=species, is_public=False), 0.9)]
    )
    second.image.thumbnail.save("thumb.jpg", ContentFile(jpeg_bytes((32, 24))))
    if not queued:
        Identification.objects.filter(annotation__image__encounter=encounter).update(
            state=Identification.State.DECIDED
        )
    return MatchCandidate.objects.get(identification__annotation=second)


def _image_urls(candidate: MatchCandidate) -> list[str]:
    """Every URL of the site that answers with a picture of ``candidate``'s two photos: every
    URL walked as an expert (who may see all photos), kept where the answer is an image."""
    query, gallery = candidate.identification.annotation, candidate.gallery_annotation
    urls, _ = every_url(
        {
            "path": [query.image.file.name, query.image.thumbnail.name, gallery.image.file.name],
            "candidate_id": [candidate.pk],
            "annotation_id": [query.pk, gallery.pk],
            "encounter_id": [query.image.encounter_id, gallery.image.encounter_id],
            "individual_id": [candidate.individual_id],
            "slug": [query.species.slug],
            "species_id": [query.species_id],
        }
    )
    expert = _client("expert")
    found = {}
    for name, url in urls:
        if expert.get(url).get("Content-Type", "").startswith("image/"):
            found[url] = name
    assert {"media-file", "candidate-correspondences"} <= set(found.values()), found
    return list(found)


def test_every_picture_url_follows_the_photo_rule_for_a_volunteer() -> None:
    hidden = _image_urls(_ranked_animal(queued=False))
    volunteer = _client("volunteer")
    # A sighting no longer in review: guessing its ids opens neither its files nor its crops.
    for url in hidden:
        assert volunteer.get(url).status_code == 404, url
    # While it waits in the queue, each photo of the animal and its candidate's photo load,
    # the second photo's too, as the review page shows it and may draw its matches.
    for url in _image_urls(_ranked_animal(queued=True)):
        response = volunteer.get(url)
        assert response.status_code == 200, url
        assert response["Content-Type"].startswith("image/"), url


def test_behind_a_proxy_the_view_hands_the_file_to_the_proxy(settings) -> None:  # noqa: ANN001
    settings.SERVE_MEDIA = False
    photo = confirmed_sighting(individual=IndividualFactory())
    name = photo.image.file.name
    response = _client(None).get(_media_url(name))
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected-media/{name}"
    settings.MEDIA_PROXY_HEADER = "X-Sendfile"
    response = _client(None).get(_media_url(name))
    assert response["X-Sendfile"] == str((Path(settings.MEDIA_ROOT) / name).resolve())
    secret = confirmed_sighting(individual=IndividualFactory(is_public=False))
    response = _client(None).get(_media_url(secret.image.file.name))
    assert response.status_code == 404 and "X-Sendfile" not in response


def _image_sources(html: str) -> list[str]:
    return re.findall(r'<(?:img|a)[^>]+(?:src|href)="(/media/[^"]+)"', html)


def test_photos_on_pages_load_for_the_people_who_see_those_pages() -> None:
    individual = IndividualFactory(species=SpeciesFactory(sensitive=True))
    confirmed_sighting(individual=individual)
    anonymous = _client(None)
    page = anonymous.get(reverse("individual-detail", args=[individual.pk])).content.decode()
    sources = _image_sources(page)
    assert sources
    for url in sources:
        assert anonymous.get(url).status_code == 200, url

    uploader = UserFactory(role="volunteer")
    annotation = AnnotationFactory(
        image=ImageFactory(encounter=EncounterFactory(submitted_by=uploader))
    )
    owner = Client()
    owner.force_login(uploader)
    encounter_id = annotation.image.encounter_id
    page = owner.get(reverse("sighting-detail", args=[encounter_id])).content.decode()
    sources = _image_sources(page)
    assert sources
    for url in sources:
        assert owner.get(url).status_code == 200, url
        assert anonymous.get(url).status_code == 404, url


def test_files_left_in_media_by_older_versions_move_to_the_private_root() -> None:
    run = TrainingRun.objects.create(
        species=SpeciesFactory(),
        base_version=ModelVersion.objects.create(
            name="base", backbone="b", weights="imagenet", embedding_dim=4
        ),
    )
    old = Path(settings.MEDIA_ROOT) / "training" / f"run-{run.pk}"
    (old / "data" / "train-x").mkdir(parents=True)
    (old / "model").mkdir()
    (old / "model" / "model.pt").write_bytes(b"weights")
    (old / "data" / "manifest.json").write_text(json.dumps({"train_dirs": [f"{old}/data/train-x"]}))
    (old / "data" / "train-x" / "metadata.csv").write_text(f"path\n{old}/data/x/images/1.jpg\n")
    np.save(old / "model" / "features-0.npy", np.zeros(3))
    version = ModelVersion.objects.create(
        name="tuned", backbone="b", weights=f"{old}/model/model.pt", embedding_dim=4
    )
    run.report = {"candidate": {"model_path": f"{old}/model/model.pt"}}
    run.save()
    upload = Path(settings.MEDIA_ROOT) / "imports" / ("a" * 32)
    upload.mkdir(parents=True)
    (upload / "animals.zip").write_bytes(b"PK")

    moved = private_files_move_from_media(
        media_root=settings.MEDIA_ROOT,
        private_root=settings.PRIVATE_ROOT,
        model_version_model=ModelVersion,
        training_run_model=TrainingRun,
    )

    new = Path(settings.PRIVATE_ROOT) / "training" / f"run-{run.pk}"
    assert set(moved) == {new, Path(settings.PRIVATE_ROOT) / "imports" / ("a" * 32)}
    assert not (Path(settings.MEDIA_ROOT) / "training").exists()
    assert not (Path(settings.MEDIA_ROOT) / "imports").exists()
    version.refresh_from_db()
    run.refresh_from_db()
    assert version.weights == f"{new}/model/model.pt"
    assert Path(version.weights).read_bytes() == b"weights"
    assert run.report["candidate"]["model_path"] == version.weights
    manifest = json.loads((new / "data" / "manifest.json").read_text())
    assert manifest["train_dirs"] == [f"{new}/data/train-x"]
    assert str(new) in (new / "data" / "train-x" / "metadata.csv").read_text()
    assert (new / "model" / "features-0.npy").exists()
