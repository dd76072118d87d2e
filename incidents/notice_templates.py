"""The built-in notification templates (``incidents.notices``), one per kind of draft.

A config folder's ``incident_templates/`` overrides them file by file; the demo ships
copies in ``config/demo/incident_templates/`` to edit. ``$name`` places a value (the
names are ``incidents.notices.draft_values``' keys), ``$$`` writes a dollar sign.
"""

from __future__ import annotations

AUTHORITY = """\
# Personal data breach notification to the $authority

Incident reference: $incident_id
Drafted: $drafted_at. This is a draft: check every section before it is sent.

$delay_note

## 1. Nature of the breach (Art. 33(3)(a))

$nature

As reported: $summary

Systems and data concerned:
$parts

Time window: $window

## 2. Subjects and records concerned (Art. 33(3)(a))

- Data subjects concerned: approximately $subjects (distinct, counted by $subjects_by)
- Personal data records concerned: approximately $records
- Categories of personal data: $categories
- Categories of a high risk: $high_risk_categories
- Regions where the data was held: $regions
- Clients whose subjects are concerned: $clients

## 3. Contact point (Art. 33(3)(b))

Our $contact: [name and contact details].

## 4. Likely consequences (Art. 33(3)(c))

$consequences

Encryption keys compromised: $key_compromised. Data unintelligible to whoever obtained it: \
$unintelligible.

## 5. Measures taken or proposed (Art. 33(3)(d))

$measures

## Timeline

$timeline
"""

SUBJECTS = """\
# Important information about your personal data

Our reference: $incident_id

## What happened

A security incident affected personal data we hold about you:
$nature

The incident concerns the period $window.

## Which of your information was involved

$categories_described

## What this may mean for you

$consequences

## What we are doing about it

$measures

## What you can do

- Be careful with unexpected e-mails, calls or messages that mention this incident or ask
  for passwords or payment details: we never ask for your password.
- If you use the same password elsewhere, change it there.

## Questions

Contact our $contact, quoting the reference $incident_id: [contact details].
"""

CLIENT = """\
# Personal data breach notification to $client

Incident reference: $incident_id
Drafted: $drafted_at; due under our agreement by $audience_deadline.
This is a draft: check every section before it is sent.

## What happened

$nature

As reported: $summary

Systems and data concerned:
$parts

Time window: $window

## Your data subjects

- Your data subjects concerned: approximately $client_subjects
- Categories of personal data: $categories (of a high risk: $high_risk_categories)
- Records concerned in total: approximately $records

## Likely consequences

$consequences

## Measures taken or proposed

$measures

## Timeline

$timeline

## Contact

Our $contact: [name and contact details].
"""

BUILT_IN = {"authority": AUTHORITY, "subjects": SUBJECTS, "client": CLIENT}
"""Template name -> text."""
