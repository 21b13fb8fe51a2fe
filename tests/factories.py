from __future__ import annotations

import factory
from django.contrib.auth.models import User
from django.core.files.base import ContentFile

from catalogue.models import Annotation, Encounter, Image, Individual, Species
from catalogue.roles import user_role_set
from tests.helpers import jpeg_bytes


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs) -> None:  # noqa: ANN003
        self.save()
        if create and extracted:
            user_role_set(user=self, role=extracted)


class SpeciesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Species
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Species {n}")
    slug = factory.LazyAttribute(lambda o: o.name.lower().replace(" ", "-"))


class IndividualFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Individual

    species = factory.SubFactory(SpeciesFactory)
    code = factory.Sequence(lambda n: f"IND-{n:04d}")


class EncounterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Encounter

    species = factory.SubFactory(SpeciesFactory)
    observed_at = factory.Faker("date_time_this_decade", tzinfo=__import__("datetime").timezone.utc)
    latitude = 51.5
    longitude = -0.12


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    encounter = factory.SubFactory(EncounterFactory)
    file = factory.LazyAttribute(lambda o: ContentFile(jpeg_bytes(), name="photo.jpg"))
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    width = 64
    height = 48


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotation

    image = factory.SubFactory(ImageFactory)
    species = factory.LazyAttribute(lambda o: o.image.encounter.species)
    bbox_w = 64
    bbox_h = 48


def confirmed_sighting(
    *,
    individual: Individual,
    observed_at: object = None,
    latitude: float | None = 51.23456,
    longitude: float | None = -0.98765,
    source: str = Annotation.IdentitySource.EXPERT,
    **encounter: object,
) -> Annotation:
    """A sighting of ``individual`` with one photo whose identity is confirmed (public site)."""
    extra = {"observed_at": observed_at} if observed_at is not None else {}
    sighting = EncounterFactory(
        species=individual.species,
        latitude=latitude,
        longitude=longitude,
        status=Encounter.Status.IDENTIFIED,
        **extra,
        **encounter,
    )
    return AnnotationFactory(
        image=ImageFactory(encounter=sighting), individual=individual, identity_source=source
    )


def _species_ranking(species: Species) -> tuple[str, object]:
    """The species' ranking method and calibration, as its searches rank (no row: defaults)."""
    from identification.models import SpeciesModel
    from identification.services.matching import species_calibrator

    setting = SpeciesModel.objects.filter(species=species).first()
    if setting is None:
        return SpeciesModel.RankingMethod.FUSED, None
    return setting.ranking_method, species_calibrator(setting=setting)


def _photo_identification(
    *, encounter: Encounter, probably_new: bool, model_version: object
) -> tuple[Annotation, object]:
    from identification.models import Identification
    from identification.services.models import zero_shot_version

    photo = AnnotationFactory(image=ImageFactory(encounter=encounter))
    identification = Identification.objects.create(
        annotation=photo,
        state=Identification.State.READY,
        model_version=model_version or zero_shot_version(),
        probably_new=probably_new,
    )
    return photo, identification


def ranked_photo(
    *,
    encounter: Encounter,
    ranking: list[tuple[Individual, float]],
    probably_new: bool = False,
    model_version: object = None,
) -> Annotation:
    """A photo of a sighting, ranked: its candidates (individual, probability) in rank order.

    Each candidate's cosine is its probability and it has 10 inliers, so every method's score
    (stored as the search stores it) keeps the order given.
    """
    from identification.models import MatchCandidate
    from reid.ranking import method_score

    photo, identification = _photo_identification(
        encounter=encounter, probably_new=probably_new, model_version=model_version
    )
    method, calibrator = _species_ranking(encounter.species)
    for rank, (individual, probability) in enumerate(ranking, start=1):
        MatchCandidate.objects.create(
            identification=identification,
            rank=rank,
            individual=individual,
            gallery_annotation=AnnotationFactory(
                image__encounter__species=encounter.species, individual=individual
            ),
            embedding_score=probability,
            inlier_count=10,
            score=method_score(method, probability, 10, calibrator),
            fused_score=probability,
        )
    return photo


def searched_photo(
    *,
    encounter: Encounter,
    evidence: list[tuple[Individual, float, int | None]],
    method: str | None = None,
    model_version: object = None,
) -> Annotation:
    """A photo of a sighting whose search found these candidates (individual, cosine,
    inliers), stored as ``annotation_identify`` stores them: ranked by the species' method
    (``reid.ranking.rank``), each with its score and probability, and the "probably new"
    flag from the first candidate's probability. ``method``: another than the species' own
    (as before a switch)."""
    from identification.models import MatchCandidate, SpeciesModel
    from identification.services.matching import match_candidates_build
    from reid.ranking import Candidate, rank

    species_method, calibrator = _species_ranking(encounter.species)
    method = method or species_method
    gallery = {
        individual.pk: AnnotationFactory(
            image__encounter__species=encounter.species, individual=individual
        )
        for individual, _, _ in evidence
    }
    scored = rank(
        [Candidate(i.pk, gallery[i.pk].pk, cosine, inliers) for i, cosine, inliers in evidence],
        method,
        calibrator,
    )
    setting = SpeciesModel.objects.filter(species=encounter.species).first()
    threshold = (
        setting.probably_new_threshold if setting else SpeciesModel.DEFAULT_NEW_INDIVIDUAL_THRESHOLD
    )
    photo, identification = _photo_identification(
        encounter=encounter,
        probably_new=not scored or scored[0].probability < threshold,
        model_version=model_version,
    )
    # Stored as the search stores them.
    MatchCandidate.objects.bulk_create(
        match_candidates_build(identification=identification, scored=scored)
    )
    return photo


def random_embeddings(annotations: list, *, species: Species, version, seed: int = 0) -> None:  # noqa: ANN001
    """A random unit vector for each annotation under ``version``, drawn in order from
    ``seed`` (the tests that need a gallery, not particular similarities)."""
    import numpy as np

    from identification.models import Embedding

    rng = np.random.default_rng(seed)
    for annotation in annotations:
        vector = rng.normal(size=version.embedding_dim)
        Embedding.objects.create(
            annotation=annotation,
            model_version=version,
            species=species,
            vector=(vector / np.linalg.norm(vector)).tolist(),
        )
