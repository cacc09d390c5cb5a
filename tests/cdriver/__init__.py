"""Tests of C drivers run against pywsk (pywsk.cdriver, pywsk driver)."""
