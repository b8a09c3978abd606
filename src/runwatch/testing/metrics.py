"""One scrape of a ``/metrics`` endpoint, read with prometheus-client's own text parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


class Scrape:
    """The samples of one scrape; ``value(name, **labels)`` is a sample's value (0.0 when absent)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, Labels], float] = {}
        self.types: dict[str, str] = {}  # family name -> counter, gauge, summary, ...
        for fam in text_string_to_metric_families(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name`` with exactly these labels, or 0.0."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def labelled(self, name: str) -> dict[Labels, float]:
        """Every sample named ``name``, by its (sorted) labels."""
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    """GET ``url`` and parse the text format (AssertionError unless it answers 200)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        assert resp.status == 200, resp.status
        return Scrape(resp.read().decode())
