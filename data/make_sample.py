#!/usr/bin/env python3
"""Writes `wine-reviews-sample.json`: a small SYNTHETIC corpus in the format of the Kaggle wine reviews.

None of these reviews is real. Countries, provinces, regions and grape varieties are real places and
grapes, spelled as the Kaggle dataset (`zynicide/wine-reviews`) spells them; wineries, tasters and
every description are invented from the tables and templates below. The corpus exists so that
`make demo`, the tests and a classroom without the 130k-review download have something to train on
that has the lecture's structure: each country has its own provinces, each province its own regions
and grapes, and each grape its own fruit, aromas and structure words in the description.

The script uses only the standard library and one `random.Random(SEED)` (drawn through `random()`
alone, whose sequence CPython keeps stable), so every run writes the same bytes.

Usage:
    python data/make_sample.py             # writes gpt_keras/runs/wine-reviews-sample.json
    python data/make_sample.py --check     # exit 1 if the committed file differs from a fresh generation
    python data/make_sample.py --output F  # writes elsewhere
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20240607
N_REVIEWS = 3000
# The sample ships inside the package, where `gpt-keras demo` and `train` find it in any install.
OUTPUT = Path(__file__).resolve().parent.parent / "gpt_keras" / "runs" / "wine-reviews-sample.json"

# Rows planted with missing (null) fields, so that the loader's "dropped" report has something to say.
# Each entry: the fields set to null. As in the Kaggle data, a review without a country also has no province.
NULL_ROWS = (
    ("country", "province"), ("country", "province"),
    ("province",), ("province",),
    ("variety",), ("variety",),
    ("description",), ("description",),
)

# --- where the wines come from ------------------------------------------------------------------
# country: (weight, provinces); province: (weight, regions); region: (region_1, region_2, weight, varieties).
# Weights are relative. region_1 None: the Kaggle data has no region for most wines of that country;
# region_2 is filled, as in Kaggle, only for US wines.

GEOGRAPHY = (
    ("US", 22, (
        ("California", 55, (
            ("Napa Valley", "Napa", 30, (("Cabernet Sauvignon", 5), ("Chardonnay", 2), ("Merlot", 1), ("Sauvignon Blanc", 1))),
            ("Russian River Valley", "Sonoma", 20, (("Pinot Noir", 4), ("Chardonnay", 3), ("Zinfandel", 1))),
            ("Sonoma Coast", "Sonoma", 15, (("Pinot Noir", 3), ("Chardonnay", 2), ("Syrah", 1))),
            ("Paso Robles", "Central Coast", 15, (("Zinfandel", 2), ("Syrah", 2), ("Cabernet Sauvignon", 2), ("Red Blend", 2))),
            ("Santa Barbara County", "Central Coast", 10, (("Pinot Noir", 2), ("Chardonnay", 2), ("Syrah", 1))),
            ("Lodi", "Central Valley", 10, (("Zinfandel", 3), ("Cabernet Sauvignon", 1))),
        )),
        ("Washington", 20, (
            ("Columbia Valley (WA)", "Columbia Valley", 50, (("Cabernet Sauvignon", 3), ("Merlot", 2), ("Riesling", 2), ("Chardonnay", 2))),
            ("Walla Walla Valley (WA)", "Columbia Valley", 25, (("Syrah", 2), ("Cabernet Sauvignon", 2), ("Merlot", 1))),
            ("Red Mountain", "Columbia Valley", 25, (("Cabernet Sauvignon", 2), ("Bordeaux-style Red Blend", 2), ("Syrah", 1))),
        )),
        ("Oregon", 15, (
            ("Willamette Valley", "Willamette Valley", 50, (("Pinot Noir", 4), ("Pinot Gris", 2), ("Chardonnay", 1))),
            ("Dundee Hills", "Willamette Valley", 25, (("Pinot Noir", 1),)),
            ("Eola-Amity Hills", "Willamette Valley", 25, (("Pinot Noir", 3), ("Chardonnay", 1))),
        )),
        ("New York", 10, (
            ("Finger Lakes", "Finger Lakes", 60, (("Riesling", 4), ("Cabernet Franc", 1), ("Gewürztraminer", 1))),
            ("North Fork of Long Island", "Long Island", 40, (("Merlot", 2), ("Cabernet Franc", 2), ("Chardonnay", 1))),
        )),
    )),
    ("France", 14, (
        ("Bordeaux", 28, (
            ("Pauillac", None, 20, (("Bordeaux-style Red Blend", 1),)),
            ("Margaux", None, 20, (("Bordeaux-style Red Blend", 1),)),
            ("Saint-Émilion", None, 25, (("Bordeaux-style Red Blend", 1),)),
            ("Pessac-Léognan", None, 15, (("Bordeaux-style Red Blend", 2), ("Bordeaux-style White Blend", 1))),
            ("Bordeaux Blanc", None, 20, (("Bordeaux-style White Blend", 1),)),
        )),
        ("Burgundy", 22, (
            ("Chablis", None, 25, (("Chardonnay", 1),)),
            ("Meursault", None, 20, (("Chardonnay", 1),)),
            ("Gevrey-Chambertin", None, 20, (("Pinot Noir", 1),)),
            ("Pommard", None, 15, (("Pinot Noir", 1),)),
            ("Bourgogne", None, 20, (("Pinot Noir", 1), ("Chardonnay", 1))),
        )),
        ("Alsace", 12, (
            ("Alsace", None, 1, (("Riesling", 3), ("Gewürztraminer", 2), ("Pinot Gris", 2), ("Pinot Blanc", 1))),
        )),
        ("Loire Valley", 12, (
            ("Sancerre", None, 45, (("Sauvignon Blanc", 1),)),
            ("Vouvray", None, 30, (("Chenin Blanc", 1),)),
            ("Chinon", None, 25, (("Cabernet Franc", 1),)),
        )),
        ("Champagne", 10, (
            ("Champagne", None, 1, (("Champagne Blend", 1),)),
        )),
        ("Rhône Valley", 14, (
            ("Châteauneuf-du-Pape", None, 30, (("Rhône-style Red Blend", 1),)),
            ("Côtes du Rhône", None, 30, (("Rhône-style Red Blend", 3), ("Rhône-style White Blend", 1))),
            ("Crozes-Hermitage", None, 30, (("Syrah", 1),)),
            ("Condrieu", None, 10, (("Viognier", 1),)),
        )),
        ("Provence", 8, (
            ("Côtes de Provence", None, 1, (("Rosé", 1),)),
        )),
    )),
    ("Italy", 14, (
        ("Tuscany", 30, (
            ("Chianti Classico", None, 40, (("Sangiovese", 1),)),
            ("Brunello di Montalcino", None, 25, (("Sangiovese Grosso", 1),)),
            ("Bolgheri", None, 20, (("Red Blend", 2), ("Cabernet Sauvignon", 1))),
            ("Toscana", None, 15, (("Red Blend", 1), ("Sangiovese", 1))),
        )),
        ("Piedmont", 25, (
            ("Barolo", None, 40, (("Nebbiolo", 1),)),
            ("Barbaresco", None, 25, (("Nebbiolo", 1),)),
            ("Barbera d'Asti", None, 20, (("Barbera", 1),)),
            ("Moscato d'Asti", None, 15, (("Moscato", 1),)),
        )),
        ("Veneto", 18, (
            ("Amarone della Valpolicella", None, 35, (("Corvina, Rondinella, Molinara", 1),)),
            ("Prosecco", None, 40, (("Glera", 1),)),
            ("Soave Classico", None, 25, (("Garganega", 1),)),
        )),
        ("Sicily & Sardinia", 15, (
            ("Sicilia", None, 50, (("Nero d'Avola", 3), ("Frappato", 1))),
            ("Etna", None, 25, (("Nerello Mascalese", 2), ("White Blend", 1))),
            ("Vermentino di Sardegna", None, 25, (("Vermentino", 1),)),
        )),
        ("Northeastern Italy", 12, (
            ("Alto Adige", None, 60, (("Pinot Grigio", 2), ("Pinot Bianco", 1), ("Lagrein", 1))),
            ("Friuli Colli Orientali", None, 40, (("Friulano", 2), ("Pinot Grigio", 1))),
        )),
    )),
    ("Spain", 8, (
        ("Northern Spain", 45, (
            ("Rioja", None, 45, (("Tempranillo", 2), ("Tempranillo Blend", 2), ("Garnacha", 1))),
            ("Ribera del Duero", None, 25, (("Tempranillo", 1),)),
            ("Rueda", None, 15, (("Verdejo", 1),)),
            ("Navarra", None, 15, (("Garnacha", 2), ("Rosé", 1))),
        )),
        ("Catalonia", 25, (
            ("Cava", None, 50, (("Sparkling Blend", 1),)),
            ("Priorat", None, 35, (("Red Blend", 2), ("Garnacha", 1))),
            ("Penedès", None, 15, (("White Blend", 1),)),
        )),
        ("Galicia", 18, (
            ("Rías Baixas", None, 70, (("Albariño", 1),)),
            ("Ribeira Sacra", None, 30, (("Mencía", 1),)),
        )),
        ("Levante", 12, (
            ("Jumilla", None, 60, (("Monastrell", 1),)),
            ("Yecla", None, 40, (("Monastrell", 1),)),
        )),
    )),
    ("Portugal", 7, (
        ("Douro", 35, ((None, None, 1, (("Portuguese Red", 3), ("Touriga Nacional", 1), ("Portuguese White", 1))),)),
        ("Port", 15, ((None, None, 1, (("Port", 1),)),)),
        ("Alentejano", 20, ((None, None, 1, (("Portuguese Red", 3), ("Portuguese White", 1))),)),
        ("Vinho Verde", 20, ((None, None, 1, (("Portuguese White", 2), ("Alvarinho", 1))),)),
        ("Dão", 10, (("Dão", None, 1, (("Portuguese Red", 2), ("Touriga Nacional", 1))),)),
    )),
    ("Germany", 7, (
        ("Mosel", 40, ((None, None, 1, (("Riesling", 1),)),)),
        ("Rheingau", 15, ((None, None, 1, (("Riesling", 4), ("Spätburgunder", 1))),)),
        ("Rheinhessen", 15, ((None, None, 1, (("Riesling", 3), ("Silvaner", 1), ("Scheurebe", 1))),)),
        ("Pfalz", 15, ((None, None, 1, (("Riesling", 3), ("Spätburgunder", 1), ("Dornfelder", 1))),)),
        ("Franken", 8, ((None, None, 1, (("Silvaner", 3), ("Riesling", 1))),)),
        ("Baden", 7, ((None, None, 1, (("Spätburgunder", 2), ("Grauburgunder", 1), ("Weissburgunder", 1))),)),
    )),
    ("Argentina", 6, (
        ("Mendoza Province", 80, (
            ("Mendoza", None, 40, (("Malbec", 4), ("Cabernet Sauvignon", 1), ("Chardonnay", 1))),
            ("Uco Valley", None, 35, (("Malbec", 3), ("Cabernet Franc", 1), ("Chardonnay", 1))),
            ("Luján de Cuyo", None, 25, (("Malbec", 2), ("Bonarda", 1))),
        )),
        ("Other", 20, (
            ("Salta", None, 60, (("Torrontés", 2), ("Malbec", 1))),
            ("Patagonia", None, 40, (("Pinot Noir", 1), ("Malbec", 1))),
        )),
    )),
    ("Chile", 6, (
        ("Colchagua Valley", 30, ((None, None, 1, (("Cabernet Sauvignon", 2), ("Carmenère", 2), ("Syrah", 1), ("Red Blend", 1))),)),
        ("Maipo Valley", 25, ((None, None, 1, (("Cabernet Sauvignon", 3), ("Carmenère", 1), ("Merlot", 1))),)),
        ("Casablanca Valley", 25, ((None, None, 1, (("Sauvignon Blanc", 3), ("Chardonnay", 2), ("Pinot Noir", 1))),)),
        ("Maule Valley", 20, ((None, None, 1, (("Carignan", 1), ("Cabernet Sauvignon", 1), ("Red Blend", 1))),)),
    )),
    ("Australia", 6, (
        ("South Australia", 55, (
            ("Barossa Valley", None, 45, (("Shiraz", 3), ("Grenache", 1), ("Cabernet Sauvignon", 1))),
            ("McLaren Vale", None, 25, (("Shiraz", 2), ("Grenache", 1))),
            ("Clare Valley", None, 15, (("Riesling", 1),)),
            ("Adelaide Hills", None, 15, (("Sauvignon Blanc", 1), ("Chardonnay", 1))),
        )),
        ("Victoria", 20, (("Yarra Valley", None, 1, (("Pinot Noir", 1), ("Chardonnay", 1))),)),
        ("Western Australia", 15, (("Margaret River", None, 1, (("Cabernet Sauvignon", 2), ("Chardonnay", 2))),)),
        ("Tasmania", 10, (("Tasmania", None, 1, (("Pinot Noir", 2), ("Sparkling Blend", 1))),)),
    )),
    ("New Zealand", 5, (
        ("Marlborough", 55, (("Marlborough", None, 1, (("Sauvignon Blanc", 4), ("Pinot Noir", 1), ("Pinot Gris", 1))),)),
        ("Central Otago", 25, (("Central Otago", None, 1, (("Pinot Noir", 1),)),)),
        ("Hawke's Bay", 20, (("Hawke's Bay", None, 1, (("Syrah", 1), ("Bordeaux-style Red Blend", 1), ("Chardonnay", 1))),)),
    )),
    ("Austria", 5, (
        ("Wachau", 20, ((None, None, 1, (("Grüner Veltliner", 1), ("Riesling", 1))),)),
        ("Kamptal", 20, ((None, None, 1, (("Grüner Veltliner", 2), ("Riesling", 1))),)),
        ("Kremstal", 15, ((None, None, 1, (("Grüner Veltliner", 2), ("Riesling", 1))),)),
        ("Burgenland", 30, ((None, None, 1, (("Blaufränkisch", 2), ("Zweigelt", 2))),)),
        ("Niederösterreich", 15, ((None, None, 1, (("Grüner Veltliner", 2), ("Zweigelt", 1))),)),
    )),
)

# --- what the wines taste of --------------------------------------------------------------------
# style: (colour, bodies, fruits, notes). A variety adds its own fruits and notes, which are drawn
# twice as often as the style's, so the description depends on the grape and not only on its colour.

STYLES = {
    "light red": ("red", ("light-bodied", "medium-bodied"),
                  ("cherry", "raspberry", "strawberry", "cranberry", "red plum"),
                  ("earth", "forest floor", "rose petal", "baking spice", "mushroom")),
    "structured red": ("red", ("medium-bodied", "full-bodied"),
                       ("blackcurrant", "cassis", "blackberry", "black cherry", "plum"),
                       ("cedar", "tobacco", "graphite", "mint", "dark chocolate")),
    "spicy red": ("red", ("medium-bodied", "full-bodied"),
                  ("blackberry", "blueberry", "black plum", "black cherry"),
                  ("black pepper", "smoked meat", "violet", "licorice", "olive")),
    "ripe red": ("red", ("full-bodied",),
                 ("plum", "blackberry", "black cherry", "raspberry"),
                 ("mocha", "chocolate", "vanilla", "baking spice", "sweet oak")),
    "iberian red": ("red", ("medium-bodied", "full-bodied"),
                    ("cherry", "plum", "blackberry", "red berry"),
                    ("leather", "tobacco", "vanilla", "dill", "spice")),
    "italian red": ("red", ("medium-bodied", "full-bodied"),
                    ("sour cherry", "red cherry", "plum", "red berry"),
                    ("dried herbs", "leather", "tobacco", "earth", "spice")),
    "aromatic white": ("white", ("light-bodied", "medium-bodied"),
                       ("lime", "lemon", "green apple", "peach", "apricot"),
                       ("white flowers", "honey", "wet stone", "ginger", "blossom")),
    "crisp white": ("white", ("light-bodied", "medium-bodied"),
                    ("lemon", "lime", "grapefruit", "green apple", "pear"),
                    ("fresh herbs", "chalk", "almond", "saline", "fennel")),
    "rich white": ("white", ("medium-bodied", "full-bodied"),
                   ("apple", "pear", "pineapple", "lemon", "peach"),
                   ("butter", "toast", "vanilla", "hazelnut", "cream")),
    "sparkling": ("sparkling", ("light-bodied",),
                  ("green apple", "lemon", "pear", "white peach"),
                  ("brioche", "toast", "almond", "chalk", "white flowers")),
    "rosé": ("rosé", ("light-bodied",),
             ("strawberry", "raspberry", "watermelon", "red currant"),
             ("fresh herbs", "orange peel", "white flowers")),
    "fortified": ("fortified", ("full-bodied",),
                  ("blackberry", "plum", "dried fig", "raisin"),
                  ("chocolate", "spice", "licorice", "walnut")),
}

# variety: (style, its own fruits, its own notes)
VARIETIES = {
    "Pinot Noir": ("light red", ("cherry", "raspberry", "cola"), ("forest floor", "rose petal", "sandalwood")),
    "Spätburgunder": ("light red", ("cherry", "red currant"), ("smoke", "forest floor")),
    "Frappato": ("light red", ("strawberry", "pomegranate"), ("white pepper", "rose petal")),
    "Nerello Mascalese": ("light red", ("red cherry", "pomegranate"), ("volcanic ash", "dried herbs")),
    "Zweigelt": ("light red", ("sour cherry", "red currant"), ("white pepper", "spice")),
    "Grenache": ("light red", ("raspberry", "strawberry"), ("licorice", "garrigue")),
    "Garnacha": ("light red", ("raspberry", "strawberry", "plum"), ("licorice", "spice")),
    "Mencía": ("light red", ("red cherry", "pomegranate"), ("slate", "violet")),
    "Cabernet Sauvignon": ("structured red", ("blackcurrant", "cassis", "black cherry"), ("cedar", "graphite", "mint")),
    "Bordeaux-style Red Blend": ("structured red", ("blackcurrant", "plum"), ("cedar", "pencil shavings", "tobacco")),
    "Cabernet Franc": ("structured red", ("red currant", "raspberry"), ("green herbs", "bell pepper", "graphite")),
    "Carmenère": ("structured red", ("plum", "blackberry"), ("bell pepper", "green herbs", "tobacco")),
    "Merlot": ("ripe red", ("plum", "black cherry"), ("mocha", "chocolate", "herbs")),
    "Red Blend": ("ripe red", ("blackberry", "plum", "cherry"), ("vanilla", "spice")),
    "Zinfandel": ("ripe red", ("blackberry", "raspberry jam", "boysenberry"), ("black pepper", "baking spice")),
    "Malbec": ("ripe red", ("plum", "blackberry", "blueberry"), ("violet", "mocha")),
    "Bonarda": ("ripe red", ("plum", "blueberry"), ("violet", "herbs")),
    "Syrah": ("spicy red", ("blackberry", "blueberry"), ("black pepper", "smoked meat", "olive")),
    "Shiraz": ("spicy red", ("blackberry", "plum", "blueberry"), ("black pepper", "licorice", "eucalyptus")),
    "Rhône-style Red Blend": ("spicy red", ("raspberry", "black cherry"), ("garrigue", "black pepper", "leather")),
    "Monastrell": ("spicy red", ("blackberry", "prune"), ("licorice", "leather")),
    "Carignan": ("spicy red", ("black cherry", "plum"), ("earth", "herbs")),
    "Tempranillo": ("iberian red", ("cherry", "plum"), ("leather", "vanilla", "dill")),
    "Tempranillo Blend": ("iberian red", ("red berry", "plum"), ("vanilla", "spice", "coconut")),
    "Portuguese Red": ("iberian red", ("blackberry", "plum"), ("spice", "dark chocolate")),
    "Touriga Nacional": ("iberian red", ("blackberry", "black plum"), ("violet", "spice")),
    "Sangiovese": ("italian red", ("sour cherry", "red cherry"), ("dried herbs", "tobacco", "tomato leaf")),
    "Sangiovese Grosso": ("italian red", ("cherry", "plum"), ("leather", "tobacco", "truffle")),
    "Nebbiolo": ("italian red", ("red cherry", "raspberry"), ("rose", "tar", "licorice")),
    "Barbera": ("italian red", ("red cherry", "plum"), ("spice", "cocoa")),
    "Lagrein": ("italian red", ("blackberry", "plum"), ("cocoa", "spice")),
    "Nero d'Avola": ("italian red", ("black cherry", "plum"), ("licorice", "spice")),
    "Corvina, Rondinella, Molinara": ("italian red", ("dried cherry", "raisin", "plum"), ("chocolate", "spice")),
    "Dornfelder": ("italian red", ("blackberry", "plum"), ("smoke", "spice")),
    "Blaufränkisch": ("spicy red", ("blackberry", "dark cherry"), ("white pepper", "graphite")),
    "Riesling": ("aromatic white", ("lime", "green apple", "peach"), ("slate", "petrol", "honey")),
    "Scheurebe": ("aromatic white", ("grapefruit", "blackcurrant"), ("white flowers", "herbs")),
    "Gewürztraminer": ("aromatic white", ("lychee", "peach"), ("rose petal", "ginger")),
    "Grüner Veltliner": ("aromatic white", ("green apple", "lemon", "pear"), ("white pepper", "herbs")),
    "Albariño": ("aromatic white", ("peach", "nectarine", "lemon"), ("saline", "blossom")),
    "Alvarinho": ("aromatic white", ("lemon", "lime"), ("saline", "white flowers")),
    "Torrontés": ("aromatic white", ("peach", "lychee"), ("jasmine", "orange blossom")),
    "Moscato": ("aromatic white", ("peach", "apricot"), ("orange blossom", "honey")),
    "Sauvignon Blanc": ("crisp white", ("grapefruit", "gooseberry", "passion fruit"), ("cut grass", "green herbs", "flint")),
    "Verdejo": ("crisp white", ("lime", "grapefruit", "melon"), ("fennel", "herbs")),
    "Vermentino": ("crisp white", ("lemon", "green apple"), ("saline", "herbs")),
    "Pinot Grigio": ("crisp white", ("pear", "apple", "lemon"), ("almond",)),
    "Pinot Gris": ("crisp white", ("pear", "apple", "peach"), ("honey", "spice")),
    "Grauburgunder": ("crisp white", ("pear", "apple"), ("almond", "spice")),
    "Pinot Bianco": ("crisp white", ("apple", "pear"), ("almond", "white flowers")),
    "Pinot Blanc": ("crisp white", ("apple", "pear"), ("almond", "white flowers")),
    "Weissburgunder": ("crisp white", ("apple", "pear"), ("almond", "chalk")),
    "Silvaner": ("crisp white", ("green apple", "pear"), ("herbs", "wet stone")),
    "Friulano": ("crisp white", ("pear", "apple"), ("almond", "herbs")),
    "Garganega": ("crisp white", ("pear", "lemon"), ("almond", "white flowers")),
    "Chenin Blanc": ("crisp white", ("quince", "apple", "pear"), ("honey", "beeswax")),
    "Portuguese White": ("crisp white", ("lemon", "apple"), ("herbs", "saline")),
    "White Blend": ("crisp white", ("apple", "pear", "lemon"), ("herbs", "almond")),
    "Bordeaux-style White Blend": ("crisp white", ("grapefruit", "lemon"), ("toast", "cut grass")),
    "Rhône-style White Blend": ("rich white", ("peach", "pear"), ("honey", "almond")),
    "Chardonnay": ("rich white", ("apple", "pear", "pineapple"), ("butter", "toast", "hazelnut")),
    "Viognier": ("rich white", ("apricot", "peach"), ("honeysuckle", "spice")),
    "Champagne Blend": ("sparkling", ("green apple", "lemon"), ("brioche", "chalk")),
    "Sparkling Blend": ("sparkling", ("apple", "lemon"), ("toast", "almond")),
    "Glera": ("sparkling", ("pear", "green apple"), ("white flowers",)),
    "Rosé": ("rosé", ("strawberry", "watermelon"), ("fresh herbs", "orange peel")),
    "Port": ("fortified", ("blackberry", "plum", "dried fig"), ("chocolate", "walnut")),
}

COLOUR_NOUNS = {"red": ("red", "wine"), "white": ("white", "wine"), "sparkling": ("sparkler", "sparkling wine"),
                "rosé": ("rosé", "wine"), "fortified": ("fortified wine", "port")}
QUALITY = {  # by points: below 87, 87 to 90, above 90
    "low": ("simple", "easy", "modest", "straightforward", "soft", "pleasant"),
    "mid": ("balanced", "fresh", "attractive", "well-made", "juicy", "lively"),
    "high": ("impressive", "elegant", "complex", "beautiful", "polished", "concentrated"),
}
STRUCTURE = {  # (plural things that "frame" the fruit, singular things that "lift" it)
    "red": (("firm tannins", "soft tannins", "ripe tannins", "dusty tannins", "velvety tannins", "fine-grained tannins"),
            ("fresh acidity", "bright acidity", "a touch of oak", "toasty oak", "a firm structure")),
    "white": (("crisp acidity", "zesty acidity", "racy acidity", "lively acidity", "mouthwatering acidity"),
              ("a creamy texture", "a steely edge", "a mineral streak", "a touch of sweetness", "a round texture")),
    "sparkling": (("fine bubbles", "lively bubbles", "a creamy mousse", "crisp acidity"),
                  ("a creamy mousse", "a dry finish", "a touch of sweetness", "a fresh edge")),
    "rosé": (("crisp acidity", "bright acidity", "a light texture"),
             ("a dry finish", "a fresh edge", "a crisp texture")),
    "fortified": (("firm tannins", "sweet fruit", "rich layers"),
                  ("a sweet finish", "a spirity edge", "a firm structure")),
}
FINISH = ("long", "short", "dry", "crisp", "smooth", "spicy", "lingering", "clean", "warm", "fresh", "bright")
FOOD = {
    "red": ("grilled lamb", "roast beef", "steak", "pasta", "mushrooms", "hard cheese", "barbecue"),
    "white": ("seafood", "grilled fish", "roast chicken", "oysters", "salads", "spicy food", "soft cheese"),
    "sparkling": ("oysters", "seafood", "salty snacks", "an aperitif"),
    "rosé": ("salads", "grilled fish", "seafood", "a summer lunch"),
    "fortified": ("dessert", "blue cheese", "chocolate", "nuts"),
}

# --- who made and who tasted them (invented) ----------------------------------------------------

WINERY_PATTERNS = {
    "US": ("{} Cellars", "{} Vineyards", "{} Family Wines", "{} Estate"),
    "France": ("Château {}", "Domaine {}", "Maison {}"),
    "Italy": ("Tenuta {}", "Cantina {}", "Fattoria {}"),
    "Spain": ("Bodegas {}", "Viñedos {}", "Celler {}"),
    "Portugal": ("Quinta do {}", "Quinta da {}", "Casa {}"),
    "Germany": ("Weingut {}", "Weingut {} Erben"),
    "Argentina": ("Bodega {}", "Finca {}"),
    "Chile": ("Viña {}", "Bodega {}"),
    "Australia": ("{} Estate", "{} Wines", "{} Hill"),
    "New Zealand": ("{} Estate", "{} Wines", "{} Ridge"),
    "Austria": ("Weingut {}", "Weingut {} Hof"),
}
# Name syllables per country: two joined make an invented family or estate name.
NAME_PARTS = {
    "US": (("Ash", "Birch", "Cal", "Dun", "Elk", "Fair", "Hol", "Mar", "Red", "Stone"), ("ford", "wood", "den", "ridge", "ton", "brook")),
    "France": (("Bel", "Cor", "Lan", "Mar", "Per", "Ros", "Sau", "Val"), ("ville", "mont", "lac", "ier", "onne", "ac")),
    "Italy": (("Bel", "Cas", "Fio", "Lor", "Mon", "Ros", "Ser", "Vit"), ("ello", "ina", "ano", "etti", "one", "aldi")),
    "Spain": (("Al", "Cas", "Fer", "Mon", "Ol", "San", "Val", "Vi"), ("ares", "eda", "illo", "era", "uela", "ón")),
    "Portugal": (("Al", "Cas", "Fon", "Mar", "Ped", "Val", "Vil"), ("eira", "ouro", "ado", "inha", "ela")),
    "Germany": (("Al", "Bren", "Eck", "Hart", "Lin", "Rein", "Sten", "Wal"), ("berg", "hof", "mann", "ner", "dorf", "ling")),
    "Argentina": (("Al", "Cor", "Lag", "Mir", "Pie", "San", "Ter"), ("ares", "ada", "ino", "onte", "illa")),
    "Chile": (("Al", "Cam", "Lag", "Mon", "Quin", "Río", "Ver"), ("ares", "ada", "ino", "uen", "illa")),
    "Australia": (("Black", "Coal", "Gum", "Iron", "Red", "Sand", "Wattle"), ("wood", "creek", "gate", "hill", "stone")),
    "New Zealand": (("Clear", "Fern", "Kea", "Moss", "Tui", "White"), ("water", "stone", "bay", "field", "ridge")),
    "Austria": (("Au", "Berg", "Gru", "Hol", "Klam", "Stei", "Wein"), ("er", "mann", "hofer", "ler", "bauer")),
}
WINERIES_PER_COUNTRY = 12
DESIGNATIONS = {
    "US": ("Reserve", "Estate", "Old Vines", "Barrel Select", "Hillside", "Estate Grown"),
    "France": ("Vieilles Vignes", "Cuvée Prestige", "Réserve", "Les Pierres", "Clos du Moulin"),
    "Italy": ("Riserva", "Superiore", "Vigna Vecchia", "Classico", "Selezione"),
    "Spain": ("Crianza", "Reserva", "Gran Reserva", "Viñas Viejas", "Joven"),
    "Portugal": ("Reserva", "Grande Reserva", "Colheita", "Vinhas Velhas"),
    "Germany": ("Kabinett", "Spätlese", "Trocken", "Feinherb", "Alte Reben", "Auslese"),
    "Argentina": ("Reserva", "Gran Reserva", "Single Vineyard", "Alta Altura"),
    "Chile": ("Reserva", "Gran Reserva", "Single Vineyard", "Limited Edition"),
    "Australia": ("Old Vine", "Single Vineyard", "Reserve", "Bin 12"),
    "New Zealand": ("Reserve", "Single Vineyard", "Estate"),
    "Austria": ("Federspiel", "Smaragd", "Reserve", "Alte Reben", "Klassik"),
}
STYLE_DESIGNATIONS = {"sparkling": ("Brut", "Extra Dry", "Brut Nature"), "fortified": ("Vintage", "10 Year Old Tawny", "Late Bottled Vintage")}
TASTERS = (  # (name, handle or None, countries they cover); names are invented
    ("Dana Whitcombe", "@danawhitcombe", ("US",)),
    ("Luis Ferrand", "@luisferrand", ("US", "Argentina", "Chile", "Spain")),
    ("Marion Delacroix", "@mariondelacroix", ("France", "Portugal")),
    ("Paola Rinaldi", "@paolarinaldi", ("Italy",)),
    ("Henrik Adler", None, ("Germany", "Austria", "France")),
    ("Tess Morgan", "@tessmorganwine", ("Australia", "New Zealand", "US")),
)

# --- description templates ----------------------------------------------------------------------
# Fields: {q} quality adjective, {c} colour noun, {v} variety, {place} region or province,
# {f1} {f2} {f3} fruits, {n1} {n2} {n3} notes, {body} {body2}, {frame} (plural), {lift} (singular), {fin} {fin2}
# finish adjectives, {food}, {year}. A template is capitalised after filling.

NOSE = (
    "aromas of {f1}, {f2} and {n1} lead the nose.",
    "this {q} {c} opens with aromas of {f1} and {n1}.",
    "{f1} and {f2} aromas are accented by notes of {n1}.",
    "the nose offers {f1}, {f2} and a touch of {n1}.",
    "this {v} shows {f1} and {n1} on the nose.",
    "there's a lovely scent of {f1} and {n1} here.",
    "it's a {q}, {body} {c} with aromas of {f1} and {f2}.",
    "this {v} from {place} offers {f1} and {n1} aromas.",
    "hints of {n1} and {f1} come first on the nose.",
)
PALATE = (
    "the palate is {body2}, with {f2} and {f3} flavors framed by {frame}.",
    "on the palate, {f2} and {n2} flavors are supported by {frame}.",
    "it's {q} in the mouth, offering {f2}, {f3} and {n2}.",
    "flavors of {f2} and {n2} are lifted by {lift}.",
    "there's {lift} behind the {f2} and {f3} fruit.",
    "the {body2} palate brings {f2} and {n2}, with {lift}.",
    "it isn't heavy: {f2} and {f3} flavors sit on {frame}.",
    "{f2} and {n2} flavors carry through, with {frame} and {lift}.",
)
FINISH_SENTENCES = (
    "the finish is {fin}, with a hint of {n3}.",
    "it finishes {fin} and {fin2}.",
    "drink now through {year}.",
    "drink now.",
    "best after {year}.",
    "a good match for {food}.",
    "it's ready to drink, but don't hurry.",
    "the finish is {fin} and {fin2}, with notes of {n3}.",
    "pair it with {food}.",
)


class Draw:
    """Random choices drawn only through `random.Random.random()`, whose sequence CPython keeps stable."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def random(self) -> float:
        return self._rng.random()

    def below(self, n: int) -> int:
        return min(int(self._rng.random() * n), n - 1)

    def choice(self, items):
        return items[self.below(len(items))]

    def weighted(self, items, weights):
        total = sum(weights)
        point = self._rng.random() * total
        for item, weight in zip(items, weights):
            point -= weight
            if point < 0:
                return item
        return items[-1]

    def distinct(self, pool, k: int) -> list:
        """k different items from a pool that may repeat items (repeats raise their odds)."""
        chosen: list = []
        while len(chosen) < k:
            item = self.choice(pool)
            if item not in chosen:
                chosen.append(item)
        return chosen

    def normal(self, mean: float, sd: float) -> float:
        """Irwin-Hall approximation of a normal draw (sum of 12 uniforms)."""
        return mean + sd * (sum(self._rng.random() for _ in range(12)) - 6.0)


def make_wineries(draw: Draw) -> dict[str, list[str]]:
    wineries = {}
    for country, *_ in GEOGRAPHY:
        firsts, seconds = NAME_PARTS[country]
        names: list[str] = []
        while len(names) < WINERIES_PER_COUNTRY:
            name = draw.choice(WINERY_PATTERNS[country]).format(draw.choice(firsts) + draw.choice(seconds))
            if name not in names:
                names.append(name)
        wineries[country] = names
    return wineries


def describe(draw: Draw, variety: str, place: str, points: int, vintage: int) -> str:
    """One to three sentences about the wine, from the templates, with the variety's descriptors."""
    style, own_fruits, own_notes = VARIETIES[variety]
    colour, bodies, fruits, notes = STYLES[style]
    f1, f2, f3 = draw.distinct(own_fruits * 2 + fruits, 3)
    n1, n2, n3 = draw.distinct(own_notes * 2 + notes, 3)
    level = "low" if points < 87 else "mid" if points <= 90 else "high"
    frame_words, lift_words = STRUCTURE[colour]
    fin, fin2 = draw.distinct(FINISH, 2)
    values = {
        "q": draw.choice(QUALITY[level]), "c": draw.choice(COLOUR_NOUNS[colour]), "v": variety,
        "place": place, "f1": f1, "f2": f2, "f3": f3, "n1": n1, "n2": n2, "n3": n3,
        "body": draw.choice(bodies), "body2": draw.choice(bodies), "frame": draw.choice(frame_words), "lift": draw.choice(lift_words),
        "fin": fin, "fin2": fin2, "food": draw.choice(FOOD[colour]),
        "year": vintage + 3 + draw.below(8 if level == "high" else 4),
    }
    n_sentences = draw.weighted((1, 2, 3), (20, 45, 35))
    groups = ((NOSE, PALATE, FINISH_SENTENCES), (NOSE, PALATE), (NOSE,))[3 - n_sentences]
    if n_sentences == 2 and draw.random() < 0.4:
        groups = (NOSE, FINISH_SENTENCES)
    sentences = []
    for group in groups:
        text = draw.choice(group).format(**values)
        sentences.append(text[0].upper() + text[1:])
    return " ".join(sentences)


def make_review(draw: Draw, wineries: dict[str, list[str]]) -> dict:
    country, _, provinces = draw.weighted(GEOGRAPHY, [entry[1] for entry in GEOGRAPHY])
    province, _, regions = draw.weighted(provinces, [entry[1] for entry in provinces])
    region_1, region_2, _, varieties = draw.weighted(regions, [entry[2] for entry in regions])
    variety = draw.weighted([v for v, _ in varieties], [w for _, w in varieties])
    style = VARIETIES[variety][0]
    colour = STYLES[style][0]
    points = max(80, min(100, round(draw.normal(88.4, 3.0))))
    price = None if draw.random() < 0.07 else float(max(7, round(draw.normal(12 + (points - 80) * 3.5, 8.0))))
    vintage = 2008 + draw.below(10)
    winery = draw.choice(wineries[country])
    designations = STYLE_DESIGNATIONS.get(colour, DESIGNATIONS[country])
    designation = draw.choice(designations) if colour in STYLE_DESIGNATIONS or draw.random() < 0.6 else None
    place = region_1 or province
    # "This Port from Port" reads badly: name the country when the place is the variety's own name.
    said_place = country if place == variety else place.replace(" (WA)", "")
    description = describe(draw, variety, said_place, points, vintage)
    tasters = [t for t in TASTERS if country in t[2]]
    taster = None if draw.random() < 0.15 else draw.choice(tasters)
    title = " ".join(part for part in (winery, str(vintage), designation, variety) if part) + f" ({place})"
    # Field order and types of the Kaggle JSON: points is text, price a number or null.
    return {
        "points": str(points), "title": title, "description": description,
        "taster_name": taster[0] if taster else None, "taster_twitter_handle": taster[1] if taster else None,
        "price": price, "designation": designation, "variety": variety,
        "region_1": region_1, "region_2": region_2, "province": province, "country": country, "winery": winery,
    }


def generate(seed: int = SEED, n_reviews: int = N_REVIEWS) -> list[dict]:
    draw = Draw(seed)
    wineries = make_wineries(draw)
    reviews = [make_review(draw, wineries) for _ in range(n_reviews)]
    # Plant the missing fields at distinct rows spread over the file.
    rows: list[int] = []
    while len(rows) < len(NULL_ROWS):
        row = draw.below(n_reviews)
        if row not in rows:
            rows.append(row)
    for row, fields in zip(rows, NULL_ROWS):
        for field in fields:
            reviews[row][field] = None
    return reviews


def render(reviews: list[dict]) -> bytes:
    """One review per line (readable diffs), UTF-8, no ASCII escapes; a JSON list as Kaggle's file is."""
    lines = [json.dumps(review, ensure_ascii=False, separators=(", ", ": ")) for review in reviews]
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the file at --output differs from a fresh generation")
    args = parser.parse_args(argv)
    content = render(generate())
    if args.check:
        try:
            current = args.output.read_bytes()
        except OSError as error:
            print(f"{args.output}: cannot read ({error.strerror}); run `python data/make_sample.py`", file=sys.stderr)
            return 1
        if current != content:
            print(f"{args.output}: differs from what data/make_sample.py generates; "
                  "run `python data/make_sample.py` and commit the result", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date ({len(content):,} bytes)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(args.output.name + ".tmp")
    temporary.write_bytes(content)
    temporary.replace(args.output)
    print(f"wrote {args.output}: {N_REVIEWS:,} synthetic reviews, {len(NULL_ROWS)} with a missing field, "
          f"{len(content):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
