"""fastlrp's benchmark suite (``python -m fastlrp.bench``, ``fastlrp bench``) and the networks
and helpers the scripts in ``bench/`` share. See :mod:`fastlrp.bench.suite` for what each
figure means."""
