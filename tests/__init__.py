"""The test suite: shared tools here, lesson code in lessons/ (see README, "For maintainers")."""
