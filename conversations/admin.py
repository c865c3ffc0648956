from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from conversations.models import (
    Attachment,
    CannedResponse,
    Conversation,
    Disposition,
    Interaction,
    Message,
    Note,
    Offer,
    Service,
)


@admin.register(Disposition)
class DispositionAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "is_active", "position"]
    list_editable = ["is_active", "position"]
    list_filter = ["is_active"]
    search_fields = ["name", "code"]
    prepopulated_fields = {"code": ["name"]}


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "is_active",
        "share_voice",
        "share_chat",
        "share_email",
        "share_sms",
        "offer_timeout_seconds",
        "wrapup_seconds",
    ]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["dispositions"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_active", "media"]}),
        (_("Capacity"), {"fields": ["share_voice", "share_chat", "share_email", "share_sms", "chat_during_call"]}),
        (_("Timers"), {"fields": ["offer_timeout_seconds", "wrapup_seconds"]}),
        (_("Wrap-up"), {"fields": ["dispositions"]}),
        (_("Supervision"), {"fields": ["service_level_seconds", "service_level_percent", "business_hours"]}),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        # Imported here: the supervisor app builds on this one. It checks the business hours.
        from supervisor.forms import ServiceAdminForm

        kwargs.setdefault("form", ServiceAdminForm)
        return super().get_form(request, obj, change, **kwargs)


class InteractionInline(admin.TabularInline):
    model = Interaction
    extra = 0
    fields = ["medium", "direction", "state", "agent", "created_at", "answered_at", "ended_at", "end_reason"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ["created_at", "medium", "direction", "author_kind", "author_agent", "subject", "body", "delivery_status"]
    readonly_fields = fields
    ordering = ["created_at", "id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class NoteInline(admin.TabularInline):
    model = Note
    extra = 0
    fields = ["created_at", "author", "body"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "service", "assigned_agent", "opened_at", "closed_at", "disposition"]
    list_filter = ["status", "service", "assigned_agent", "disposition", "opened_at", "interactions__medium"]
    search_fields = ["uuid", "contact__first_name", "contact__last_name", "contact__points__value"]
    list_select_related = ["contact", "service", "assigned_agent", "disposition"]
    date_hierarchy = "opened_at"
    # Status and times change only through the conversation services (close, open-or-join).
    readonly_fields = ["uuid", "contact", "status", "opened_at", "closed_at"]
    fields = [
        "uuid",
        "contact",
        "service",
        "status",
        "assigned_agent",
        "opened_at",
        "closed_at",
        "disposition",
        "notes",
    ]
    inlines = [InteractionInline, MessageInline, NoteInline]

    def has_add_permission(self, request) -> bool:
        return False

    def get_search_results(self, request, queryset, search_term):
        queryset, _may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset, True


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "conversation", "medium", "direction", "state", "agent", "created_at", "ended_at"]
    list_filter = ["medium", "direction", "state", "service", "created_at"]
    list_select_related = ["conversation__contact", "agent"]
    raw_id_fields = ["conversation", "agent"]
    date_hierarchy = "created_at"


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 0
    fields = ["filename", "content_type", "size"]
    readonly_fields = fields


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["__str__", "conversation", "medium", "direction", "author_kind", "delivery_status", "created_at"]
    list_filter = ["medium", "direction", "delivery_status", "created_at"]
    search_fields = ["body", "subject", "provider_message_id"]
    list_select_related = ["conversation__contact"]
    raw_id_fields = ["conversation", "interaction", "author_agent"]
    date_hierarchy = "created_at"
    inlines = [AttachmentInline]


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ["__str__", "conversation", "author", "created_at"]
    search_fields = ["body"]
    raw_id_fields = ["conversation", "author"]


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    """Offers are a record of routing; they change only through accept, reject, expiry and transfer."""

    list_display = ["__str__", "agent", "state", "created_at", "expires_at", "responded_at", "transferred_by"]
    list_filter = ["state", "created_at", "interaction__medium", "interaction__service"]
    list_select_related = ["interaction", "agent", "transferred_by"]
    search_fields = ["agent__username", "agent__first_name", "agent__last_name", "transfer_note"]
    date_hierarchy = "created_at"
    fields = [
        "interaction",
        "agent",
        "state",
        "created_at",
        "expires_at",
        "responded_at",
        "transferred_by",
        "transfer_note",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class CannedResponseScopeFilter(admin.SimpleListFilter):
    title = _("scope")
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("shared", _("Shared with every agent")), ("personal", _("Personal"))]

    def queryset(self, request, queryset):
        if self.value() == "shared":
            return queryset.filter(owner__isnull=True)
        if self.value() == "personal":
            return queryset.filter(owner__isnull=False)
        return queryset


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    """Shared responses have no owner; an owner makes a response personal to that agent."""

    list_display = ["shortcut", "title", "scope", "owner"]
    list_filter = [CannedResponseScopeFilter]
    list_select_related = ["owner"]
    search_fields = ["shortcut", "title", "body", "owner__username"]
    raw_id_fields = ["owner"]
    fields = ["shortcut", "title", "body", "owner"]
    ordering = ["owner", "shortcut"]

    @admin.display(description=_("scope"), ordering="owner")
    def scope(self, obj: CannedResponse) -> str:
        return _("Shared") if obj.owner_id is None else _("Personal")
