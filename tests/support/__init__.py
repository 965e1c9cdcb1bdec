"""Helpers the tests share. Tests import helpers from here, never from each other."""
