"""factory_boy factories for the domain model."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from agents.models import AgentProfile, NotReadyReason
from contacts.models import Contact, ContactPoint
from conversations.models import Conversation, Direction, Disposition, Interaction, Medium, Service

TEST_PASSWORD = "parley-test-password"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@parley.test")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class SupervisorFactory(UserFactory):
    username = factory.Sequence(lambda n: f"supervisor{n}")
    is_staff = True
    is_superuser = True


class ServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Service
        django_get_or_create = ["slug"]

    name = factory.Sequence(lambda n: f"Service {n}")
    slug = factory.Sequence(lambda n: f"service-{n}")


class DispositionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Disposition
        django_get_or_create = ["code"]

    name = factory.Sequence(lambda n: f"Outcome {n}")
    code = factory.Sequence(lambda n: f"outcome-{n}")


class NotReadyReasonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotReadyReason
        django_get_or_create = ["code"]

    name = factory.Sequence(lambda n: f"Reason {n}")
    code = factory.Sequence(lambda n: f"reason-{n}")


class AgentFactory(factory.django.DjangoModelFactory):
    """An agent profile with its user."""

    class Meta:
        model = AgentProfile

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"test-agent{n}"))


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")


class ContactPointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactPoint

    contact = factory.SubFactory(ContactFactory)
    kind = ContactPoint.Kind.EMAIL
    value = factory.Sequence(lambda n: f"customer{n}@example.com")


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    contact = factory.SubFactory(ContactFactory)
    service = factory.SubFactory(ServiceFactory)


class InteractionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Interaction

    conversation = factory.SubFactory(ConversationFactory)
    medium = Medium.CHAT
    direction = Direction.INBOUND
    service = factory.LazyAttribute(lambda i: i.conversation.service)
