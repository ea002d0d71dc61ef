from django.urls import path

from . import views

urlpatterns = [
    path("signup", views.signup),
    path("word-count", views.count_words),
]
