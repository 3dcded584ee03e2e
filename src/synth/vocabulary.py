"""The synthetic world's words: names, places, plans, charges, pages, consent rates and the conversation templates.

Pure data (and the few arrays derived from it that ``world.py`` indexes); no
randomness here. Most of the length is ``CONVERSATIONS``: call and chat
templates per topic, kept together so the words the Journey agent looks for
are easy to check in one place.
"""

from __future__ import annotations

import numpy as np

from cvm.utils.config import STANDARD_CHANNELS

FIRST_NAMES = (
    "Daniel", "Agnieszka", "Gareth", "Sophie", "Ravi", "Margaret", "Kirsty", "Tom", "Bronwen", "Jamal", "Colin",
    "Hannah", "Oliver", "Amelia", "Mohammed", "Isla", "George", "Ava", "Harry", "Mia", "Jack", "Grace", "Noah",
    "Freya", "Leo", "Priya", "Arjun", "Chloe", "Ethan", "Aisha", "Callum", "Niamh", "Owen", "Zara", "Lewis",
    "Fatima", "Rhys", "Megan", "Kwame", "Eilidh", "Tomasz", "Ewa", "Samuel", "Ruth", "Declan", "Siobhan", "Yusuf",
    "Chen", "Mei", "Luca", "Sofia", "David", "Sarah", "Michael", "Emma", "James", "Laura", "Paul", "Joanne",
    "Stephen", "Nicola", "Andrew", "Claire", "Imran", "Nadia", "Patrick", "Deborah", "Kofi", "Abena", "Ian", "Rebecca",
)
LAST_NAMES = (
    "Whitaker", "Nowak", "Hughes", "Marsh", "Chandran", "Ellison", "Campbell", "Fairclough", "Price", "Okafor",
    "Rourke", "Lowe", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Khan", "Ali", "Hussain", "Singh", "Kaur", "Murphy", "O'Brien", "Kelly", "Macdonald", "Stewart",
    "Reid", "Morgan", "Griffiths", "Lewis", "Kowalski", "Wiśniewski", "Mensah", "Adeyemi", "Nguyen", "Wong",
    "Rossi", "Silva", "Begum", "Ahmed", "Shaw", "Fletcher", "Barker", "Doyle", "Gallagher", "Quinn", "Pearson",
)
PLACES = (
    "Headingley, Leeds", "Ealing, London", "Cardiff Bay", "Brighton, Hove", "Leicester city centre", "Harrogate",
    "Govan, Glasgow", "Salford Quays", "Clifton, Bristol", "Jesmond, Newcastle", "Moseley, Birmingham",
    "Portobello, Edinburgh", "Kings Heath, Birmingham", "Walthamstow, London", "Didsbury, Manchester",
    "Anfield, Liverpool", "Sneinton, Nottingham", "Heavitree, Exeter", "Roath, Cardiff", "Ormeau, Belfast",
    "Swansea Marina", "Ipswich town centre", "Norwich, Norfolk", "Truro, Cornwall", "Inverness", "Aberystwyth",
    "Keswick, Cumbria", "Hebden Bridge", "Whitby", "Lerwick, Shetland", "Stornoway", "Bodmin Moor", "Kendal",
    "Ambleside", "Crickhowell", "Fort William", "Skipton", "Hexham", "Builth Wells", "Dornoch",
)
RURAL_FROM = PLACES.index("Keswick, Cumbria")
"""Places from here on are rural (more of them have poor network)."""

CONSUMER_PLANS = (
    ("SIM Only 12GB", 9.99, 12.0), ("SIM Only 30GB", 15.99, 30.0), ("SIM Only 100GB", 19.99, 100.0),
    ("40GB 5G", 25.99, 40.0), ("Essentials 20GB + Pixel 7a", 33.99, 20.0), ("Unlimited 5G", 41.99, 0.0),
    ("Essentials 30GB + Galaxy S23", 47.99, 30.0), ("Unlimited 5G + Pixel 9", 57.99, 0.0),
    ("Unlimited Max 5G + Galaxy S25", 71.99, 0.0), ("Unlimited Max 5G + iPhone 16 Pro", 91.99, 0.0),
)
BUSINESS_PLANS = (
    ("Business Essentials 25GB", 21.99, 25.0), ("Business 50GB", 31.99, 50.0), ("Business Unlimited", 44.99, 0.0),
    ("Business Unlimited + iPhone 16", 64.99, 0.0), ("Business Unlimited Max + Galaxy S25 Ultra", 84.99, 0.0),
)
"""(name, list price, data allowance in GB; 0 is unlimited)."""

REGULAR_CHARGES = (
    "Calls to 0870 numbers", "Calls to 0845 numbers", "International calls - Poland", "International calls - India",
    "International calls - Nigeria", "International calls - Pakistan", "Directory enquiries 118", "Picture messages",
    "Premium SMS", "Calls to 0843 numbers",
)
SHOCK_CHARGES = (
    "Premium rate services", "Out-of-bundle data", "Calls to 09 numbers", "Third-party subscription",
    "International calls - USA", "Out-of-bundle calls",
)
COUNTRIES = ("Spain", "France", "Italy", "Portugal", "Greece", "the USA", "Turkey", "Switzerland", "Croatia", "Dubai")
ROAMING_CHARGES = tuple(f"Roaming - {c}" if i % 2 else f"Roaming data - {c}" for i, c in enumerate(COUNTRIES))
COMPETITORS = ("Vodafone", "EE", "O2", "Three Mobile", "giffgaff", "Sky Mobile", "Tesco Mobile")
PHONES = ("iPhone 17", "iPhone 17 Pro", "Galaxy S25", "Pixel 10", "Galaxy A56", "iPhone 16e")
AGENTS = (
    "Priya", "Liam", "Chloe", "Marcus", "Sian", "Ade", "Kerry", "Josh", "Naomi", "Craig", "Lucy", "Farah", "Ben",
    "Hollie", "Dev",
)
FAMILY = ("my son", "my daughter", "the kids", "my partner", "my mum")
WEEKS = ("two weeks", "three weeks", "a month", "six weeks", "ten days")
DAYS_LEFT = ("five days", "a week", "ten days", "two weeks")
DND_WINDOWS = ("22:00-08:00", "21:00-09:00", "23:00-07:00", "22:00-07:00", "21:00-08:00")
CONTACT_WINDOWS = ("09:00-12:00", "10:00-12:00", "12:00-14:00", "14:00-17:00", "17:00-19:00", "18:00-20:00")
TREATMENT_IDS = tuple(STANDARD_CHANNELS)
CHANNELS = ("email", "sms", "call", "push_notifications")
PURPOSES = ("marketing", "service_updates", "billing")
CONSENT_RATES: dict[str, tuple[float, float, float]] = {
    "email": (0.62, 0.93, 0.95),
    "sms": (0.48, 0.90, 0.92),
    "call": (0.22, 0.80, 0.86),
    "push_notifications": (0.38, 0.62, 0.58),
}
"""P(Y) per channel for (marketing, service_updates, billing), before the few who refuse all marketing."""
MARKETING_REFUSERS = 0.10
NO_PERMISSIONS = 0.03

TOPICS = ("network", "bill", "roaming", "cancel", "data", "family", "upgrade", "cheaper", "happy", "general")
NONE = -1
PAGES: dict[str, tuple[str, ...]] = {
    "network": ("/support/coverage-checker", "/support/network-status", "/support/wifi-calling"),
    "bill": ("/billing/explain-my-bill", "/support/premium-rate-bar", "/billing/explain-my-bill"),
    "roaming": ("/roaming/eu", "/roaming/worldwide", "/roaming/eu"),
    "cancel": ("/account/cancel", "/support/pac-code", "/account/contract"),
    "data": ("/plans/data-add-ons", "/plans/unlimited", "/account/usage"),
    "family": ("/plans/family", "/plans/family/add-line", "/plans/family"),
    "upgrade": ("/phones/upgrade", "/phones/apple-iphone-17", "/phones/samsung-galaxy-s25"),
    "cheaper": ("/plans/sim-only", "/plans/compare", "/plans/sim-only"),
    "happy": ("/rewards", "/rewards", "/account/overview"),
    "general": ("/help/esim", "/account/overview", "/help/contact-us"),
}
BROWSING = ("/", "/account/overview", "/app/download", "/help/contact-us", "/shop/accessories", "/account/usage", "/offers")
"""Pages that show no particular interest."""
STRAY = ("/rewards", "/phones/upgrade", "/plans/family", "/roaming/eu", "/plans/data-add-ons", "/plans/sim-only")
"""Interest pages that customers without that topic visit now and then."""

OFFER_BOOST: dict[str, dict[str, float]] = {
    "network": {"service_call_back": 0.40, "service_sms": 0.25, "retention_email": 0.10},
    "bill": {"service_sms": 0.30, "service_call_back": 0.25, "personalized_offer": 0.15},
    "roaming": {"personalized_offer": 0.35, "service_sms": 0.25},
    "cancel": {"marketing_call_back": 0.35, "retention_email": 0.30, "retention_sms": 0.25, "personalized_offer": 0.25},
    "data": {"data_boost": 0.45, "personalized_offer": 0.15},
    "family": {"family_plan": 0.45, "personalized_offer": 0.10},
    "upgrade": {"early_upgrade": 0.45, "personalized_offer": 0.10},
    "cheaper": {"personalized_offer": 0.35, "retention_email": 0.15},
    "happy": {"loyalty_points": 0.35, "loyalty_app": 0.30},
    "general": {"loyalty_app": 0.10},
}

# Conversations: (speaker, words) turns with {slots}. The customer's turns carry
# the words the Journey agent reads (signal, bill, roaming, family, upgrade,
# cancel and competitors, running out of data, cheaper...); each topic keeps to
# its own, so a transcript shows the interest it was written for.
Turn = tuple[str, str]
CONVERSATIONS: dict[str, tuple[tuple[Turn, ...], ...]] = {
    "network": (
        (("customer", "My calls keep dropping at home in {place}. Most evenings I get one bar of signal or nothing at all."),
         ("agent", "I'm sorry to hear that, {first}. Can you tell me when it started?"),
         ("customer", "About {weeks} ago. I can't get through a ten-minute call without it cutting out, and I work from home."),
         ("agent", "I can see reduced capacity on a mast near you. I've raised a network ticket, reference {ref}, and Wi-Fi Calling should help in the meantime."),
         ("customer", "I've already got Wi-Fi Calling on and it still drops. If it's not sorted soon I'll be looking elsewhere.")),
        (("customer", "I rang {weeks} ago about no signal in {place}, reference {ref}. Nothing has changed and I had four calls dropped last night alone."),
         ("agent", "I'm really sorry, {first}. The ticket was closed without a fix, which shouldn't have happened. I've reopened and escalated it."),
         ("customer", "I'm paying {price} a month and I can't make a phone call in my own living room. This is ridiculous."),
         ("agent", "I completely understand. I've added a credit for the disruption and the network team will call you back within 48 hours."),
         ("customer", "Okay. Please make sure they actually do.")),
        (("customer", "Mobile data has been really poor around {place} for {weeks}. Pages won't load and video calls freeze."),
         ("agent", "Thanks for letting us know, {first}. I'm running a check on the cells that serve {place} now."),
         ("customer", "It's frustrating, the coverage checker on your website says it should be fine here."),
         ("agent", "There's planned work on a nearby site which is limiting speeds. It should finish within a fortnight; your reference is {ref}."),
         ("customer", "I'll give it two weeks, but I'm not impressed.")),
    ),
    "bill": (
        (("customer", "My bill this month is {bill}. It's normally about {price}. I've been overcharged and I want to know why."),
         ("agent", "Let me take a look, {first}. I can see {extra} of extra charges on the latest bill."),
         ("customer", "I never signed up to any premium services. This is the third time I've had to complain about my bill."),
         ("agent", "I'm sorry. I've put a bar on premium rate numbers and raised a dispute for those charges, reference {ref}."),
         ("customer", "I want a refund, not a dispute. If this keeps happening I'm not staying.")),
        (("customer", "I've been charged {extra} on top of my plan and I've no idea what it's for. I'm shocked, honestly."),
         ("agent", "I understand, {first}. Those are calls to 09 numbers and a third-party subscription on your account."),
         ("customer", "I didn't authorise any subscription. How do I get the money back?"),
         ("agent", "I've stopped the subscription and requested a refund of the charges. You'll see it on your next bill."),
         ("customer", "Right. Please make sure it doesn't happen again.")),
        (("customer", "Can someone explain my bill? It's gone up to {bill} and my plan is only {price}."),
         ("agent", "Of course, {first}. The difference is out-of-bundle charges from last month."),
         ("customer", "Why wasn't I warned? That's a terrible way to treat customers."),
         ("agent", "You should have had a text at 80% of your allowance. I can apply a one-off goodwill credit."),
         ("customer", "I'd appreciate that, but I'm still annoyed about it.")),
    ),
    "roaming": (
        (("customer", "Hello, my bill has {roaming} of roaming charges on it. I was in {country} for a week, I thought roaming was included?"),
         ("agent", "Sorry for the surprise, {first}. Your plan needs a roaming pass, which is £2.50 a day. Without it, data is charged at standard rates."),
         ("customer", "Nobody told me that. I got a welcome text abroad but it didn't say I'd be charged this much."),
         ("agent", "As a one-off I can re-rate your trip as if you'd had the pass, which brings the charges down a lot."),
         ("customer", "That would be much better, thank you. How do I stop it happening again?")),
        (("customer", "I'm going on holiday to {country} next week. What will it cost to use my phone there?"),
         ("agent", "Good question, {first}. You can add a roaming pass for £2.50 a day and use your allowance as you do at home."),
         ("customer", "Can I add it now so I don't forget?"),
         ("agent", "Done, it's on your account and only charges on days you use it."),
         ("customer", "Great, thanks for your help.")),
        (("customer", "I used my phone in {country} on a work trip and the roaming cost me {roaming}. That seems a lot for a few days."),
         ("agent", "I can see the data sessions, {first}. That destination isn't covered by your plan."),
         ("customer", "Is there a bundle for travel further afield? I'm away again next month."),
         ("agent", "Yes, the Worldwide Traveller pass covers 50 destinations. I'll text you the details."),
         ("customer", "Okay, send it over.")),
    ),
    "cancel": (
        (("customer", "I want to cancel my contract. {competitor} have offered me the same plan for {offer} a month."),
         ("agent", "I'm sorry to hear you're thinking of going, {first}. Can I ask what's prompted it?"),
         ("customer", "I'm paying {price} and getting nothing for being loyal. Just give me my PAC code, please."),
         ("agent", "Before I do, I can offer you a retention discount that would bring your price down."),
         ("customer", "It's too late for that, to be honest. I've had enough.")),
        (("customer", "How do I leave? I've had nothing but problems and I'm fed up."),
         ("agent", "I'm sorry, {first}. I can take you through your options, or send a PAC code if you've decided."),
         ("customer", "{competitor} will give me double the data for less. Unless you can match it I'm switching."),
         ("agent", "Let me see what I can do. I'll have a specialist call you back today."),
         ("customer", "Fine, but I want an answer today.")),
        (("customer", "My contract ends soon and I'm thinking of switching to {competitor}. What can you do for me?"),
         ("agent", "Thanks for giving us the chance, {first}. I can look at a loyalty price for you."),
         ("customer", "It needs to be under {offer} a month or I'm going."),
         ("agent", "I'll see what's available and email you an offer."),
         ("customer", "Okay, but I won't wait long.")),
    ),
    "data": (
        (("customer", "I keep running out of data before the end of the month. It happened again this week."),
         ("agent", "I can see you've used your full allowance for the last two months, {first}."),
         ("customer", "Is there a way to get more data without paying a fortune?"),
         ("agent", "You could add a 10GB data boost for £5, or move to a bigger plan."),
         ("customer", "I'll take the boost for now.")),
        (("customer", "I ran out of data with {days} to go before my allowance reset. Streaming on the train uses loads."),
         ("agent", "Unlimited might suit you better, {first}. You used {gb} last month."),
         ("customer", "What does unlimited cost exactly?"),
         ("agent", "It would be {offer} a month, and you'd keep your number."),
         ("customer", "Let me think about it.")),
        (("customer", "How much is a data add-on? I've only got 1GB left and there are {days} to go."),
         ("agent", "A 5GB add-on is £3, {first}, and it lasts until your allowance resets."),
         ("customer", "Okay, please add one."),
         ("agent", "Done. You'll get a text to confirm."),
         ("customer", "Thanks.")),
    ),
    "family": (
        (("customer", "I'd like to add a line for {family}. Do you do family plans?"),
         ("agent", "We do, {first}. Each extra line on a family plan gets 20% off, and you can share data between lines."),
         ("customer", "That sounds good. Can I set a spending cap on the extra line?"),
         ("agent", "Yes, you can set a cap and content filters from the app."),
         ("customer", "Brilliant, I'll have a look at the options tonight.")),
        (("customer", "We've got three phones in the house on different networks. Could we put them all on one family plan?"),
         ("agent", "Yes, {first}, and you'd save on each additional line. Which numbers would you like to bring across?"),
         ("customer", "Mine, my partner's and the kids'. We'd like to pay for them together."),
         ("agent", "I'll send you a quote for three lines, with the steps to move the numbers."),
         ("customer", "Thanks, that's helpful.")),
        (("customer", "I'm getting a first phone for {family}. Can I add an extra line to my account?"),
         ("agent", "Of course, {first}. A SIM Only line on the family plan starts at £6 a month."),
         ("customer", "Perfect. Does it come with parental controls?"),
         ("agent", "Yes, they're on by default for under-16s and you manage them in the app."),
         ("customer", "Great, let's do it.")),
    ),
    "upgrade": (
        (("customer", "My phone is getting slow and the battery barely lasts a day. Am I due an upgrade?"),
         ("agent", "Let me check, {first}. You're eligible from next month, but I can offer an early upgrade now."),
         ("customer", "I've been looking at the {phone}. What would that cost on my plan?"),
         ("agent", "I can do the {phone} with unlimited data for about what you pay now, with no upfront cost."),
         ("customer", "That sounds good. Can you email me the details?")),
        (("customer", "Is there a deal on the new {phone}? I've been with you for years."),
         ("agent", "There is, {first}. Long-standing customers get £10 a month off for the first year."),
         ("customer", "Can I trade in my old handset as well?"),
         ("agent", "Yes, it looks like it's worth about £120 in trade-in credit."),
         ("customer", "Great, thanks. I'll pop into the shop at the weekend.")),
        (("customer", "My screen is cracked and I'd rather get a new phone than fix it. What can you offer?"),
         ("agent", "Sorry to hear that, {first}. You can upgrade now and pay off the remaining device plan."),
         ("customer", "How much would the {phone} be?"),
         ("agent", "With your current allowance it's around {offer} a month."),
         ("customer", "Okay, I'll think about it.")),
    ),
    "cheaper": (
        (("customer", "I'm paying {price} a month. Is there anything cheaper? I don't think I use anywhere near my allowance."),
         ("agent", "You've used around {gb} a month recently, {first}, so a smaller plan would cover you comfortably."),
         ("customer", "How much is that? And would I keep my number?"),
         ("agent", "Our SIM Only 30GB is £15.99 a month, and yes, your number stays the same."),
         ("customer", "That's quite a saving. Can I change now or do I have to wait until my contract ends?")),
        (("customer", "Money is tight at the moment and my plan is too expensive. What are my options?"),
         ("agent", "Let me look, {first}. Moving to SIM Only would save you about £15 a month."),
         ("customer", "Would I lose anything?"),
         ("agent", "Only the handset payments, which finish next month anyway."),
         ("customer", "Okay, let's do that.")),
        (("customer", "I saw a lower price for my plan on your website for new customers. Can I have it too?"),
         ("agent", "I can check, {first}. I'm able to match that price when your minimum term ends next month."),
         ("customer", "That seems fair. Please set it up."),
         ("agent", "I've added a note and you'll get a text when it's applied."),
         ("customer", "Thanks.")),
    ),
    "happy": (
        (("customer", "I just wanted to say thanks, the team sorted my new SIM really quickly."),
         ("agent", "That's lovely to hear, {first}. I'll pass it on."),
         ("customer", "Brilliant service, I'd recommend you to anyone."),
         ("agent", "Thank you. Is there anything else I can help with today?"),
         ("customer", "No, that's all. Cheers.")),
        (("customer", "How do I use my rewards? I've got quite a few points saved up."),
         ("agent", "You can spend them in the app on cinema tickets, coffee or money off accessories, {first}."),
         ("customer", "Perfect, thank you. That's really helpful."),
         ("agent", "You're welcome. Enjoy them."),
         ("customer", "Thanks, have a good day.")),
        (("customer", "I've moved house and wanted to update my address. Everything else is great, by the way."),
         ("agent", "Congratulations on the move, {first}. I've updated your address now."),
         ("customer", "Lovely, thanks for being so quick."),
         ("agent", "No trouble at all."),
         ("customer", "Cheers, bye.")),
    ),
    "general": (
        (("customer", "I'd like to set up an eSIM on my watch. Can you talk me through it?"),
         ("agent", "Of course, {first}. Open the watch app on your phone and choose Mobile Service."),
         ("customer", "It's asking for a code."),
         ("agent", "I've just sent it to you by text."),
         ("customer", "Got it, it's working now.")),
        (("customer", "I need my PUK code, my SIM is locked."),
         ("agent", "I can help, {first}. For security, can you confirm your date of birth?"),
         ("customer", "Yes, it's the fourteenth of March."),
         ("agent", "Thanks. Your PUK code is on its way by text."),
         ("customer", "Okay, I'll look now.")),
        (("customer", "Can I change the date my direct debit is taken?"),
         ("agent", "Yes, {first}. Which day of the month would suit you?"),
         ("customer", "The 28th, after I get paid."),
         ("agent", "Done. The change starts from next month."),
         ("customer", "Okay.")),
    ),
}
CALL_OPENERS = (
    "Good {day_part}, you're through to customer support, my name's {agent}. How can I help?",
    "Hello, you're speaking to {agent} in customer support, how can I help?",
    "Thanks for calling, this is {agent}. What can I do for you today?",
    "Good {day_part}, support team, {agent} speaking.",
)
CHAT_OPENERS = (
    "Hi {first}, you're chatting with {agent}. How can I help?",
    "Hello, {agent} here from the support team.",
)
CLOSERS = (
    "Thanks for getting in touch, {first}. Have a good {day_part}.",
    "I've added a note to your account. Take care, {first}.",
    "Thanks for your patience today.",
)
TEMPLATES: tuple[tuple[int, tuple[Turn, ...]], ...] = tuple(
    (TOPICS.index(topic), turns) for topic, variants in CONVERSATIONS.items() for turns in variants
)
TEMPLATE_TOPIC = np.array([topic for topic, _ in TEMPLATES])
TEMPLATE_TURNS = np.array([len(turns) for _, turns in TEMPLATES])


PLANS = CONSUMER_PLANS + BUSINESS_PLANS
PLAN_NAMES = tuple(p[0] for p in PLANS)
FULL_NAMES = tuple(f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES)
"""Every first + last name; a customer's name is the code first * len(LAST_NAMES) + last."""
CHARGE_DESCRIPTIONS = REGULAR_CHARGES + SHOCK_CHARGES + ROAMING_CHARGES + ("Additional charges",)
SHOCK_AT, ROAMING_AT = len(REGULAR_CHARGES), len(REGULAR_CHARGES) + len(SHOCK_CHARGES)
SUMMED = len(CHARGE_DESCRIPTIONS) - 1
ALL_PAGES = tuple(dict.fromkeys([*BROWSING, *STRAY, *(page for topic in TOPICS for page in PAGES[topic])]))
PAGE_CODES = np.array([[ALL_PAGES.index(page) for page in PAGES[topic]] for topic in TOPICS])
RISK_FACTORS = (
    "network_complaints", "repeat_contacts", "coverage_checker_visits", "bill_shock", "billing_complaint",
    "roaming_charges", "competitor_offer", "cancel_page_visits", "negative_sentiment", "payment_overdue",
    "price_sensitivity", "data_cap_pressure", "upgrade_interest", "household_needs_change",
    "contract_end_approaching", "low_arpu", "long_tenure",
)
DAY_SPAN = 6000
"""Dates reach this many days back from the as-of date (tenure is at most 15 years)."""



SLOT_CHOICES: dict[str, tuple[str, ...]] = {
    "agent": AGENTS, "competitor": COMPETITORS, "phone": PHONES, "weeks": WEEKS, "days": DAYS_LEFT, "family": FAMILY,
}
SLOTS = frozenset({*SLOT_CHOICES, "first", "place", "country", "ref", "gb", "day_part", "price", "bill", "extra", "roaming", "offer"})
"""Every ``{slot}`` a conversation template may use (``World._slot`` fills each)."""
