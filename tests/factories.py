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


def ranked_photo(
    *,
    encounter: Encounter,
    ranking: list[tuple[Individual, float]],
    probably_new: bool = False,
    model_version: object = None,
) -> Annotation:
    """A photo of a sighting, ranked: its candidates (individual, probability) in rank order."""
    from identification.models import Identification, MatchCandidate
    from identification.services.models import zero_shot_version

    photo = AnnotationFactory(image=ImageFactory(encounter=encounter))
    identification = Identification.objects.create(
        annotation=photo,
        state=Identification.State.READY,
        model_version=model_version or zero_shot_version(),
        probably_new=probably_new,
    )
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
            fused_score=probability,
        )
    return photo
