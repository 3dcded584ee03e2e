"""The pure decision domain: the journey's features and signals, expected value, the policy
screens and contact timing, shared by the per-customer path, the batch path and anything later.

No I/O here: callers hand in the data and the clock. Modules: ``models`` (journey, features,
candidates), ``journey`` (features, signals, timeline, insights), ``scoring`` (expected value),
``policy`` (eligibility, consent, contact caps, do-not-disturb), ``text_match`` (keywords, meaning).
"""
