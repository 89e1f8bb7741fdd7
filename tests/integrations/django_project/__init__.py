"""A Django project for the tests: a unit of work per request, counted, in every kind of view."""
