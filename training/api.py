"""API of training: species, imports (jobs: dry run, then confirm), runs, promotion."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue.models import Species
from catalogue.roles import MANAGE_SPECIES_PERMISSION
from catalogue.serializers import SpeciesSerializer
from identification.services.pipeline import species_register
from training import selectors
from training.models import DatasetImport, TrainingRun
from training.serializers import (
    DatasetImportActionSerializer,
    DatasetImportJobSerializer,
    DatasetImportUploadSerializer,
    SpeciesCreateSerializer,
    TrainingRunSerializer,
    TrainingRunStartSerializer,
)
from training.services import imports, promotion, runs
from wildweb.errors import ServiceError


class IsTrainingAdmin(permissions.BasePermission):
    message = "Only admins may manage species, imports and training."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm("training.add_trainingrun")


def _error(error: ServiceError) -> Response:
    return Response({"detail": error.message}, status=error.status_code)


class SpeciesCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsTrainingAdmin]

    @extend_schema(request=SpeciesCreateSerializer, responses={201: SpeciesSerializer})
    def post(self, request: Request) -> Response:
        if not request.user.has_perm(MANAGE_SPECIES_PERMISSION):
            return Response({"detail": "Only admins may add species."}, status=403)
        serializer = SpeciesCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            species = species_register(**serializer.validated_data)
        except ServiceError as error:
            return _error(error)
        return Response(SpeciesSerializer(species).data, status=status.HTTP_201_CREATED)


class DatasetImportApi(APIView):
    """A species' imports: GET lists them; POST a file to queue its dry run (202, at once).

    Then follow ``api/imports/<id>/`` until ``state`` is ``awaiting`` and confirm there.
    """

    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [permissions.IsAuthenticated, IsTrainingAdmin]

    @extend_schema(responses={200: DatasetImportJobSerializer(many=True)})
    def get(self, request: Request, species_id: int) -> Response:
        species = get_object_or_404(Species, pk=species_id)
        jobs = selectors.dataset_import_list(species=species)[:100]
        return Response(DatasetImportJobSerializer(jobs, many=True).data)

    @extend_schema(
        request=DatasetImportUploadSerializer, responses={202: DatasetImportJobSerializer}
    )
    def post(self, request: Request, species_id: int) -> Response:
        species = get_object_or_404(Species, pk=species_id)
        serializer = DatasetImportUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            job = imports.dataset_import_upload(
                species=species,
                uploaded_file=data["file"],
                photos_zip=data.get("photos"),
                started_by=request.user,
                options={k: v for k, v in data.items() if k not in ("file", "photos")},
            )
        except ServiceError as error:
            return _error(error)
        return Response(DatasetImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DatasetImportDetailApi(APIView):
    """One import: GET its state (and dry-run report); POST ``confirm`` or ``discard``."""

    permission_classes = [permissions.IsAuthenticated, IsTrainingAdmin]

    @extend_schema(responses={200: DatasetImportJobSerializer})
    def get(self, request: Request, import_id: int) -> Response:
        job = get_object_or_404(DatasetImport, pk=import_id)
        return Response(DatasetImportJobSerializer(job).data)

    @extend_schema(
        request=DatasetImportActionSerializer, responses={202: DatasetImportJobSerializer}
    )
    def post(self, request: Request, import_id: int) -> Response:
        job = get_object_or_404(DatasetImport, pk=import_id)
        serializer = DatasetImportActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            if serializer.validated_data["action"] == "confirm":
                job = imports.dataset_import_confirm(job=job)
            else:
                job = imports.dataset_import_discard(job=job)
        except ServiceError as error:
            return _error(error)
        return Response(DatasetImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunListCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsTrainingAdmin]

    @extend_schema(responses=TrainingRunSerializer(many=True))
    def get(self, request: Request, species_id: int) -> Response:
        species = get_object_or_404(Species, pk=species_id)
        return Response(
            TrainingRunSerializer(selectors.training_run_list(species=species), many=True).data
        )

    @extend_schema(request=TrainingRunStartSerializer, responses={201: TrainingRunSerializer})
    def post(self, request: Request, species_id: int) -> Response:
        species = get_object_or_404(Species, pk=species_id)
        serializer = TrainingRunStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = runs.training_run_start(
                species=species, created_by=request.user, **serializer.validated_data
            )
        except ServiceError as error:
            return _error(error)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


class TrainingRunApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsTrainingAdmin]

    @extend_schema(responses=TrainingRunSerializer)
    def get(self, request: Request, run_id: int) -> Response:
        return Response(
            TrainingRunSerializer(get_object_or_404(selectors.training_run_list(), pk=run_id)).data
        )


class TrainingRunActionApi(APIView):
    """``cancel`` or ``promote`` a run; a run whose report has warnings (small held-out set,
    another species losing top-1) is promoted only with ``{"confirm": true}``."""

    permission_classes = [permissions.IsAuthenticated, IsTrainingAdmin]

    @extend_schema(request=None, responses=TrainingRunSerializer)
    def post(self, request: Request, run_id: int, action: str) -> Response:
        run = get_object_or_404(TrainingRun.objects.select_related("species"), pk=run_id)
        try:
            if action == "cancel":
                runs.training_run_cancel(run=run)
            elif action == "promote":
                promotion.model_promote(run=run, confirmed=request.data.get("confirm") is True)
            else:
                return Response({"detail": f"Unknown action {action!r}."}, status=404)
        except ServiceError as error:
            return _error(error)
        run.refresh_from_db()
        return Response(TrainingRunSerializer(run).data)
