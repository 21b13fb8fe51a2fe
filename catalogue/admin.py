from django.contrib import admin

from catalogue.models import Annotation, Encounter, Image, Individual, Species


@admin.register(Species)
class SpeciesAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "sensitive", "same_viewpoint_only"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Individual)
class IndividualAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "species", "sex", "is_public"]
    list_filter = ["species", "is_public"]
    search_fields = ["code", "name"]


class ImageInline(admin.TabularInline):
    model = Image
    fields = ["file", "original_filename", "width", "height"]
    readonly_fields = fields
    extra = 0


@admin.register(Encounter)
class EncounterAdmin(admin.ModelAdmin):
    list_display = ["pk", "species", "observed_at", "submitted_by", "status"]
    list_filter = ["species", "status"]
    inlines = [ImageInline]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["pk", "species", "individual", "identity_source"]
    list_filter = ["species", "identity_source"]
    raw_id_fields = ["image", "individual"]
