"""Builds notebooks/gpt_listo_para_entrenar.ipynb, the lecture's notebook, from the cells below.

The notebook is generated so that it stays reproducible and reviewable: edit this file, run
`python scripts/build_notebook.py`, and commit both. The notebook is written without outputs and
with fixed cell ids, so rebuilding an unchanged notebook changes nothing. `--check` exits 1 when
the committed notebook differs from what this script would write (for CI).

The lesson's code is in the notebook, where the class reads it: the causal mask, `TransformerBlock`
and `TokenAndPositionEmbedding` are the package's own source (`inspect.getsource`, trimmed of what
only the package needs: registration decorators, long docstrings, the key/value-cached decoding
path), so there is one source of truth; `TextGenerator` and `print_probs` are the lecture's versions,
and tests/test_notebook.py proves that all of them give the package's outputs and parameter count.

The lecture's path (data, tokenizing, model, training, generation, `print_probs`, temperature) needs
only what Colab has (TensorFlow, Keras 3, NumPy, kagglehub): its data code is the book's (`json.load`,
the four-field filter, `pad_punctuation`), and `gpt_keras` is imported only for the extras (the
"clase | esta ejecución" tables, the sample's banner, the per-head view, the temperature sweep, GPT-2
beside our model), each of which says in one line how to get the package when it is missing.

Markdown is in Spanish for the students; code and names are in English, as in the lecture.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "gpt_listo_para_entrenar.ipynb"
sys.path.insert(0, str(REPO))


def lesson_source(obj, drop: tuple[str, ...] = (), replace: tuple[tuple[str, str], ...] = ()) -> str:
    """The source of a package function or class as the notebook shows it.

    Decorators go (the notebook does not save models, so nothing needs registering), docstrings keep
    their first line, the methods named in `drop` go, and each `replace` pair is substituted. Lines
    are cut, never rewritten, so comments and formatting stay the package's.
    """
    lines = textwrap.dedent(inspect.getsource(obj)).splitlines()
    tree = ast.parse("\n".join(lines))
    removed: set[int] = set()  # 0-based line numbers
    replaced: dict[int, str] = {}

    def docstring(node) -> None:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            first = body[0].value.value.strip().splitlines()[0]
            start, stop = body[0].lineno - 1, body[0].end_lineno
            indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
            replaced[start] = f'{indent}"""{first}"""'
            removed.update(range(start + 1, stop))

    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            for decorator in node.decorator_list:
                removed.update(range(decorator.lineno - 1, decorator.end_lineno))
            docstring(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name in drop:
                    start = min([item.lineno] + [d.lineno for d in item.decorator_list]) - 1
                    stop = item.end_lineno
                    if stop < len(lines) and not lines[stop].strip():
                        stop += 1  # the blank line after the method
                    removed.update(range(start, stop))
    kept = [replaced.get(index, line) for index, line in enumerate(lines) if index not in removed]
    text = "\n".join(kept).rstrip() + "\n"
    for old, new in replace:
        if old not in text:
            raise ValueError(f"{obj.__name__}: {old!r} is not in its source any more; update build_notebook.py")
        text = text.replace(old, new)
    return text.rstrip()


def _lesson_cells() -> dict[str, str]:
    from gpt_keras.core import layers as lesson

    return {
        "mask": lesson_source(lesson.causal_attention_mask),
        "block": lesson_source(lesson.TransformerBlock, drop=("call_cached", "compute_output_shape"),
                               replace=(("CachedMultiHeadAttention(", "layers.MultiHeadAttention("),)),
        "embedding": lesson_source(lesson.TokenAndPositionEmbedding, drop=("compute_output_shape",)),
    }


TEXT_GENERATOR = '''\
class TextGenerator(callbacks.Callback):
    def __init__(self, index_to_word, top_k=10, seed=SEED):
        super().__init__()
        self.index_to_word = index_to_word
        self.word_to_index = {word: index for index, word in enumerate(index_to_word)}
        self.rng = np.random.default_rng(seed)  # con semilla: el mismo texto en cada ejecución

    def sample_from(self, probs, temperature):
        probs = probs ** (1 / temperature)
        probs = probs / np.sum(probs)
        return self.rng.choice(len(probs), p=probs), probs

    def generate(self, start_prompt, max_tokens, temperature):
        start_tokens = [self.word_to_index.get(x, 1) for x in start_prompt.split()]
        sample_token = None
        info = []
        while len(start_tokens) < max_tokens and sample_token != 0:
            x = np.array([start_tokens])
            y, att = self.model.predict(x, verbose=0)
            sample_token, probs = self.sample_from(y[0][-1], temperature)
            info.append({"prompt": start_prompt, "word_probs": probs, "atts": att[0, :, -1, :]})
            start_tokens.append(sample_token)
            start_prompt = start_prompt + " " + self.index_to_word[sample_token]
        print(f"\\ngenerated text:\\n{start_prompt}\\n")
        return info

    def on_epoch_end(self, epoch, logs=None):
        self.generate("wine review", max_tokens=MAX_LEN, temperature=1.0)'''

PRINT_PROBS = '''\
def print_probs(info, vocab, top_k=5):
    for i in info:
        highlighted_text = []
        for word, att_score in zip(
            i["prompt"].split(), np.mean(i["atts"], axis=0)
        ):
            highlighted_text.append(
                '<span style="background-color:rgba(135,206,250,'
                + str(att_score / max(np.mean(i["atts"], axis=0)))
                + ');">'
                + word
                + "</span>"
            )
        highlighted_text = " ".join(highlighted_text)
        display(HTML(highlighted_text))

        word_probs = i["word_probs"]
        p_sorted = np.sort(word_probs)[::-1][:top_k]
        i_sorted = np.argsort(word_probs)[::-1][:top_k]
        for p, i in zip(p_sorted, i_sorted):
            print(f"{vocab[i]}: {np.round(100*p,2)}%")
        print("-----\\n")'''


def cells() -> list[tuple[str, str]]:
    """(kind, source) of every cell: "md", "code", or "code:TAG" for a tagged code cell.

    Tags: "parameters" (the cell a student edits), "install", "data" (the lecture's data code, which
    tests/test_notebook.py runs alone), "lesson" (the lesson's definitions), "model".
    """
    lesson = _lesson_cells()
    return [
        ("md", """\
# GPT listo para entrenar: reseñas de vino

Modelos Generativos Profundos, *Transformers III* (clase 21). Este cuaderno es el de la clase
(`gpt_listo_para_entrenar.ipynb`, del capítulo 9 de *Generative Deep Learning*, 2.ª ed.), celda por
celda: la carga de los datos, la máscara causal, el bloque Transformer, el embedding, el modelo,
`TextGenerator` y `print_probs` están aquí para leerlos, cambiarlos y ejecutarlos, escritos en Keras 3.

**La lección corre con lo que Colab ya trae** (TensorFlow, Keras 3, NumPy y `kagglehub` para los datos).
El paquete `gpt_keras` de este repositorio agrega extras: tablas que ponen las cifras de la clase **al
lado de las de esta ejecución**, el aviso cuando los datos son la muestra sintética, la atención por
cabeza, el barrido de temperaturas con perplejidad y la comparación con GPT-2. Si no está instalado,
cada extra lo dice en una línea y la lección sigue. (En el paquete, las mismas clases están en
`gpt_keras.core`; las pruebas comprueban que dan lo mismo que las de este cuaderno.)

## Contenido
0. [Parameters](#parameters)
1. [Load the data](#load)
2. [Tokenize the data](#tokenize)
3. [Create the Training Set](#create)
5. [Create the causal attention mask function](#causal)
6. [Create a Transformer Block layer](#transformer)
7. [Create the Token and Position Embedding](#embedder)
8. [Build the Transformer model](#build)
9. [Train the Transformer](#train)
3. [Generate text using the Transformer](#generate) (y la temperatura: ¿qué pasa si usas T = 3?)
- [GPT-2 con Hugging Face](#gpt2)

Los títulos y su numeración son los del cuaderno del libro, tal cual, para que coincidan con los de la
clase: salta el 4, y la generación de texto vuelve a numerarse 3.

> **Modos.** `MODE = "full"` es la clase: 5.8 M de parámetros, todas las reseñas (129,907), 5 épocas de
> lotes de 32, en float32, con la pérdida de Keras y los lotes barajados como en el libro (lo mismo que
> `gpt-keras train --recipe lecture`; unos 10 minutos en una GPU, horas en una CPU). `MODE = "lecture"`
> tiene la misma forma con hiperparámetros reducidos (unos minutos en CPU) y `MODE = "quick"` un modelo
> diminuto (un minuto); en ambos el texto generado tendrá menos sentido. También se eligen con la
> variable de entorno `GPT_KERAS_NOTEBOOK_MODE` (y los datos con `GPT_KERAS_DATA`)."""),
        ("code:parameters", """\
MODE = "full"  # "full": la clase; "lecture": la misma forma, reducida para una CPU; "quick": diminuto
DATA = None  # un archivo de reseñas (JSON o CSV de Kaggle); None: se busca (ver «1. Load the data»)
REPO_URL = ""  # la dirección git de este repositorio (https://github.com/...): Colab instala de ahí los extras"""),
        ("code:install", """\
import importlib
import os
import subprocess
import sys
import warnings

MODE = os.environ.get("GPT_KERAS_NOTEBOOK_MODE", MODE)
DATA = os.environ.get("GPT_KERAS_DATA", DATA)
if MODE not in ("full", "lecture", "quick"):
    raise ValueError(f"MODE debe ser 'full', 'lecture' o 'quick', no {MODE!r}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # menos líneas de C++ de TensorFlow al importarlo

INSTALL_HINT = (f'pip install "gpt-keras[gpt2] @ git+{REPO_URL}"' if REPO_URL else
                "pon en REPO_URL la dirección git de este repositorio y vuelve a ejecutar esta celda, "
                'o pip install "gpt-keras[gpt2] @ git+<esa dirección>"')


def install_gpt_keras(url):
    \"\"\"Instala el paquete con el extra [gpt2] (las celdas de GPT-2); si falla, dice por qué y sigue.\"\"\"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"gpt-keras[gpt2] @ git+{url}"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["pip no dijo por qué"])[-1]
        print(f"No se pudo instalar gpt-keras desde {url}: {reason}. La lección sigue sin los extras.")
    importlib.invalidate_caches()  # para que el import de abajo vea lo que pip acaba de instalar


try:
    import gpt_keras
except ImportError:
    if "google.colab" in sys.modules and REPO_URL:  # en Colab: instalar el paquete (en Jupyter ya está)
        install_gpt_keras(REPO_URL)
try:
    import gpt_keras

    HAVE_GPT_KERAS = True
    # Sin ruido: TensorFlow escribe unas líneas en C++ al importarse; quiet_tensorflow() las oculta
    # (GPT_KERAS_VERBOSE=1 las deja ver).
    gpt_keras.quiet_tensorflow()
except ImportError:
    HAVE_GPT_KERAS = False
    print(f"Sin el paquete gpt_keras: la lección corre igual, sin los extras. Para tenerlos: {INSTALL_HINT}.")


def needs_gpt_keras(extra):
    \"\"\"Una línea en lugar de un extra del paquete, cuando no está instalado.\"\"\"
    print(f"({extra}: es un extra del paquete gpt_keras, que no está instalado: {INSTALL_HINT}.)")


import tensorflow as tf
import keras
import absl.logging

absl.logging.set_verbosity(absl.logging.ERROR)
tf.get_logger().setLevel("ERROR")
warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed.*", category=UserWarning)
warnings.filterwarnings("ignore", message=r"IProgress not found")  # tqdm, al importar transformers
print("modo:", MODE)"""),
        ("code:setup", """\
import csv
import json
import re
import string
from pathlib import Path

import numpy as np
import tensorflow as tf
from IPython.display import HTML, display

import keras
from keras import callbacks, layers, losses, models, ops

if HAVE_GPT_KERAS:
    from gpt_keras.runs.monitoring import BatchLossSummary
    from gpt_keras.tools.lecture import data_banner, lecture_table, slide_temperature_table, word_percent

print("Keras", keras.__version__, "con backend", keras.backend.backend())"""),

        ("md", '## 0. Parameters <a name="parameters"></a>\n\nLos hiperparámetros de la clase, con sus nombres.'),
        ("code", """\
VOCAB_SIZE = 10000
MAX_LEN = 80
EMBEDDING_DIM = 256
KEY_DIM = 256
N_HEADS = 2
FEED_FORWARD_DIM = 256
SEED = 42
BATCH_SIZE = 32
EPOCHS = 5
MAX_REVIEWS = None  # todas las reseñas
LOG_DIR = "runs/notebook/logs"  # registros de TensorBoard

if MODE == "lecture":  # la forma de la clase, reducida para unos minutos en CPU
    VOCAB_SIZE, EMBEDDING_DIM, KEY_DIM, FEED_FORWARD_DIM, EPOCHS, MAX_REVIEWS = 2000, 64, 64, 64, 2, 3000
elif MODE == "quick":  # un modelo diminuto: sólo para ver que todo corre
    VOCAB_SIZE, EMBEDDING_DIM, KEY_DIM, FEED_FORWARD_DIM, EPOCHS, MAX_REVIEWS = 1000, 32, 16, 64, 1, 1000
keras.utils.set_random_seed(SEED)"""),

        ("md", """\
## 1. Load the data <a name="load"></a>

El conjunto *Wine Reviews* de Kaggle (`winemag-data-130k-v2.json`). Se busca, en este orden: el archivo
de `DATA` (o de la variable de entorno `GPT_KERAS_DATA`); la carpeta `data/` del repositorio (este
cuaderno corre en `notebooks/`, así que también se mira `../data/`); la descarga de Kaggle con
`kagglehub` (`zynicide/wine-reviews`, como en Colab); y, si nada de eso está, la muestra sintética
del paquete `gpt_keras`, con un aviso."""),
        ("code:data", """\
REVIEW_FILES = ("winemag-data-130k-v2.json", "winemag-data-130k-v2.csv")  # el JSON de la clase, o su CSV


def find_reviews():
    if DATA:
        return Path(DATA)
    for folder in (Path("data"), Path("..") / "data"):  # el repositorio, visto desde su raíz o desde notebooks/
        for name in REVIEW_FILES:
            if (folder / name).is_file():
                return folder / name
    try:
        import kagglehub
    except ImportError:
        kagglehub = None
    if kagglehub is not None:
        try:
            folder = Path(kagglehub.dataset_download("zynicide/wine-reviews"))
            return next(folder / name for name in REVIEW_FILES if (folder / name).is_file())
        except Exception as error:  # sin red, sin Kaggle: se dice y se sigue
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            print(f"No se pudo descargar zynicide/wine-reviews de Kaggle ({type(error).__name__}: {reason})")
    if HAVE_GPT_KERAS:
        from gpt_keras.runs.datasets import SAMPLE_PATH

        return SAMPLE_PATH
    raise FileNotFoundError("No hay reseñas: pon en DATA la ruta de winemag-data-130k-v2.json (o del CSV), "
                            "o instala kagglehub para descargarlas de Kaggle")


data_path = find_reviews()
print("reseñas de:", data_path)"""),
        ("md", """\
El código de la clase: se cargan las reseñas, se quedan las que tienen país, provincia, variedad y
descripción, y cada una se escribe `wine review : {país} : {provincia} : {variedad} : {descripción}`.
(Si el archivo es el CSV de Kaggle en vez del JSON, se lee en la misma lista de diccionarios, con
`None` donde la celda está vacía, como el `null` del JSON.)"""),
        ("code:data", """\
# Load the full dataset
if data_path.suffix == ".json":
    with open(data_path) as json_data:
        wine_data = json.load(json_data)
else:  # el CSV de Kaggle: las mismas columnas; una celda vacía es None, como null en el JSON
    with open(data_path, newline="", encoding="utf-8-sig") as csv_data:
        wine_data = [{key: value or None for key, value in row.items()} for row in csv.DictReader(csv_data)]"""),
        ("code:data", """\
# Filter the dataset
filtered_data = [
    "wine review : "
    + x["country"]
    + " : "
    + x["province"]
    + " : "
    + x["variety"]
    + " : "
    + x["description"]
    for x in wine_data
    if x["country"] is not None
    and x["province"] is not None
    and x["variety"] is not None
    and x["description"] is not None
]"""),
        ("code:data", """\
# Count the recipes
n_wines = len(filtered_data)
print(f"{n_wines} recipes loaded")  # así en el libro: su cuaderno viene del de recetas"""),
        ("code", """\
example = filtered_data[25]
print(example)"""),
        ("md", """\
La puntuación se separa con espacios para que cada signo sea una palabra (`pad_punctuation`)."""),
        ("code:data", """\
# Pad the punctuation, to treat them as separate 'words'
def pad_punctuation(s):
    s = re.sub(f"([{string.punctuation}, '\\n'])", r" \\1 ", s)
    s = re.sub(" +", " ", s)
    return s


text_data = [pad_punctuation(x) for x in filtered_data]"""),
        ("code", """\
if MAX_REVIEWS is not None and MAX_REVIEWS < len(text_data):
    text_data = text_data[:MAX_REVIEWS]
    print(f"modo {MODE}: se entrena con las primeras {len(text_data):,} reseñas")
if HAVE_GPT_KERAS:
    banner = data_banner(data_path, n_wines)
    if banner:
        display(HTML(banner))
    data_table = lecture_table(reviews=n_wines)
    display(data_table)
else:
    banner = None
    needs_gpt_keras("la tabla «clase | esta ejecución» de las reseñas")"""),
        ("code", """\
example_data = text_data[25]
example_data"""),

        ("md", """\
## 2. Tokenize the data <a name="tokenize"></a>

Una capa `TextVectorization` pasa el texto a minúsculas, se queda con las `VOCAB_SIZE` palabras más
frecuentes y convierte cada reseña en `MAX_LEN + 1` índices: el 0 es el relleno (*padding*) y el 1 es
`[UNK]`, la palabra desconocida."""),
        ("code", """\
text_ds = tf.data.Dataset.from_tensor_slices(text_data).batch(BATCH_SIZE).shuffle(1000)
vectorize_layer = layers.TextVectorization(
    standardize="lower",
    max_tokens=VOCAB_SIZE,
    output_mode="int",
    output_sequence_length=MAX_LEN + 1,
)
vectorize_layer.adapt(text_ds)
vocab = vectorize_layer.get_vocabulary()
if len(vocab) < VOCAB_SIZE:  # pocos datos: hay menos palabras distintas que VOCAB_SIZE
    print(f"sólo hay {len(vocab):,} palabras distintas: VOCAB_SIZE = {len(vocab):,} (no {VOCAB_SIZE:,})")
    VOCAB_SIZE = len(vocab)  # la capa de salida tendrá una neurona por palabra
for i, word in enumerate(vocab[:10]):
    print(f"{i}: {word}")"""),
        ("code", """\
example_tokenised = vectorize_layer(example_data)
print(example_tokenised.numpy())"""),

        ("md", """\
## 3. Create the Training Set <a name="create"></a>

El modelo aprende a predecir la **siguiente palabra**: la entrada `x` son los tokens sin el último y
la salida `y` los mismos tokens desplazados una posición."""),
        ("code", """\
def prepare_inputs(text):
    text = tf.expand_dims(text, -1)
    tokenized_sentences = vectorize_layer(text)
    x = tokenized_sentences[:, :-1]
    y = tokenized_sentences[:, 1:]
    return x, y


train_ds = text_ds.map(prepare_inputs)
example_input_output = train_ds.take(1).get_single_element()
print("x:", example_input_output[0][0].numpy()[:12], "...")
print("y:", example_input_output[1][0].numpy()[:12], "...")"""),

        ("md", """\
## 5. Create the causal attention mask function <a name="causal"></a>

Al predecir la palabra *i*, el modelo sólo puede mirar las palabras 0..*i*: la máscara es una matriz
triangular (1 = se puede mirar). Aquí en `keras.ops`, para cualquier backend de Keras 3."""),
        ("code:lesson", lesson["mask"]),
        ("code", 'np.transpose(causal_attention_mask(1, 10, 10, dtype="int32")[0])'),

        ("md", """\
## 6. Create a Transformer Block layer <a name="transformer"></a>

Atención multi-cabeza con la máscara causal, *dropout*, conexión residual y `LayerNormalization`;
luego una red feed-forward con lo mismo. Devuelve también los **pesos de atención de cada cabeza**:
con ellos `print_probs` mostrará dónde mira el modelo.

Este bloque es el del paquete y tiene tres cosas que el del libro no tiene; ninguna la pide Keras 3 (el
bloque del libro corre sin cambios en Keras 3.15, sin avisos, y la clase misma corrió en Keras 3):
`build` crea los pesos de cada subcapa con su forma antes de la primera llamada, y los `name=` les dan
nombres fijos, para que un modelo guardado (`.keras`) se vuelva a cargar con cada peso en su sitio y
para que la generación con caché del paquete (`call_cached`, que usa las subcapas de atención sin pasar
por `call`) los encuentre creados; `dtype=policy` hace que las subcapas calculen en la precisión del
bloque (precisión mixta). Con float32, como aquí, calcula lo mismo que el del libro."""),
        ("code:lesson", lesson["block"]),

        ("md", """\
## 7. Create the Token and Position Embedding <a name="embedder"></a>

Suma el embedding de cada palabra y el de su posición (0, 1, 2, ...): así el modelo sabe el orden."""),
        ("code:lesson", lesson["embedding"]),

        ("md", """\
## 8. Build the Transformer model <a name="build"></a>

Tokens → embedding → bloque Transformer → capa densa con softmax sobre el vocabulario. El modelo
tiene dos salidas, `[probabilidades de la siguiente palabra, atención]`; la pérdida (entropía cruzada
categórica dispersa) sólo se aplica a la primera."""),
        ("code:model", """\
inputs = layers.Input(shape=(None,), dtype="int32")
x = TokenAndPositionEmbedding(MAX_LEN, VOCAB_SIZE, EMBEDDING_DIM)(inputs)
x, attention_scores = TransformerBlock(N_HEADS, KEY_DIM, EMBEDDING_DIM, FEED_FORWARD_DIM)(x)
outputs = layers.Dense(VOCAB_SIZE, activation="softmax")(x)
gpt = models.Model(inputs=inputs, outputs=[outputs, attention_scores])
gpt.compile("adam", loss=[losses.SparseCategoricalCrossentropy(), None])"""),
        ("code", "gpt.summary()"),
        ("md", """\
Los nombres son los del libro (`token_and_position_embedding`, `transformer_block`) salvo los que pone
Keras 3: el modelo se llama `functional` (Keras 2: `model`), la entrada `input_layer` (`input_1`) y la
capa de salida `dense` (en el libro `dense_2`, porque allí las dos densas del bloque, que aquí se llaman
`ffn_1` y `ffn_2`, no tenían nombre y se llevaban `dense` y `dense_1`)."""),
        ("code", """\
if HAVE_GPT_KERAS:
    model_table = lecture_table(parameters=gpt.count_params())
    display(model_table)
else:
    print(f"{gpt.count_params():,} parámetros (la clase: 5,809,168)")"""),

        ("md", """\
## 9. Train the Transformer <a name="train"></a>

`TextGenerator` es el callback de la clase: al final de cada época genera un texto a partir de
`"wine review"` con temperatura 1.0 y lo imprime (`generated text:`).

- `sample_from` aplica la temperatura como en la clase: `probs ** (1 / T)` y renormalizar, que es lo
  mismo que softmax(*z* / *T*); luego muestrea un índice.
- `generate` es el bucle autorregresivo: pasa el prompt, muestrea una palabra, la agrega y repite,
  hasta `max_tokens` tokens o hasta que sale el relleno (índice 0). Devuelve `info`, un diccionario
  por paso con el prompt, las probabilidades y la atención.
- `on_epoch_end` genera al final de cada época (aquí `max_tokens=MAX_LEN`: el modelo no tiene
  posiciones más allá de `MAX_LEN`).

Muestrea con un generador con semilla (`SEED`) en vez de `np.random`, para que el texto se repita."""),
        ("code:lesson", TEXT_GENERATOR),
        ("md", """\
TensorBoard guarda la pérdida **por época** (`epoch_loss`, el callback de Keras) y, con el paquete,
**por lote** (`batch_loss`, `BatchLossSummary`: la pérdida de cada lote, no el promedio acumulado de la
época que muestra la barra de progreso). Para verlas: `%load_ext tensorboard` y
`%tensorboard --logdir runs/notebook/logs` (o `tensorboard --logdir runs/notebook/logs`)."""),
        ("code", """\
tensorboard_callback = callbacks.TensorBoard(log_dir=LOG_DIR)
text_generator = TextGenerator(vocab)
training_callbacks = [tensorboard_callback, text_generator]
if HAVE_GPT_KERAS:
    batch_loss_callback = BatchLossSummary(f"{LOG_DIR}/train")
    training_callbacks.insert(1, batch_loss_callback)"""),
        ("code", """\
gpt.fit(
    train_ds,
    epochs=EPOCHS,
    callbacks=training_callbacks,
)"""),
        ("code", """\
steps_per_epoch = gpt.history.params["steps"]
if HAVE_GPT_KERAS:
    training_table = lecture_table(steps_per_epoch=steps_per_epoch, loss=gpt.history.history["loss"])
    display(training_table)
else:
    print(f"{steps_per_epoch:,} pasos por época (la clase: 4,060); pérdida por época:",
          " / ".join(f"{loss:.4f}" for loss in gpt.history.history["loss"]),
          "(la clase: 2.5973 / 1.9768 / 1.8990 / 1.8507 / 1.8236)")"""),

        ("md", """\
## 3. Generate text using the Transformer <a name="generate"></a>

La generación es **autorregresiva**: se pasa el prompt, se obtienen las probabilidades de la
siguiente palabra, se **muestrea** una palabra, se agrega al prompt y se repite. La **temperatura**
*T* cambia la forma de la distribución: $p_i = e^{z_i/T} / \\sum_j e^{z_j/T}$. Con *T* < 1 se
concentra en las palabras más probables; con *T* > 1 se aplana.

`print_probs` es la función auxiliar de la clase: para cada paso muestra el prompt con el fondo de
cada palabra en azul según la atención que le prestó el modelo (promedio de las cabezas, dividido
entre el máximo: más intenso = más atención) y las `top_k` palabras siguientes más probables."""),
        ("code:lesson", PRINT_PROBS),
        ("code", 'info = text_generator.generate("wine review : us", max_tokens=80, temperature=1.0)'),
        ("code", 'info = text_generator.generate("wine review : italy", max_tokens=80, temperature=0.5)'),
        ("code", """\
info = text_generator.generate("wine review : germany", max_tokens=80, temperature=0.5)
print_probs(info, vocab)"""),
        ("md", """\
En la clase, en el paso 2 (después de `wine review : germany :`) el modelo atiende sobre todo a
**germany** y propone regiones alemanas: mosel 92.43%, rheinhessen 6.03%, rheingau 0.75%."""),
        ("code", """\
print("paso 2 de esta ejecución, después de:", repr(info[1]["prompt"]) if len(info) > 1 else "(no hubo paso 2)")
if HAVE_GPT_KERAS:
    probs_table = lecture_table(mosel_step_2=word_percent(info, vocab, step=2, word="mosel"))
    display(probs_table)
else:
    needs_gpt_keras("la tabla «clase | esta ejecución» de mosel")"""),
        ("md", """\
El bloque devuelve la atención **de cada cabeza**: el `print_probs` del paquete la muestra por
separado con `heads=True` (cada cabeza normalizada por su propio máximo). Suelen especializarse: una
mira el país, otra los dos puntos o la palabra anterior."""),
        ("code", """\
if HAVE_GPT_KERAS:
    from gpt_keras.tools import viz

    viz.print_probs(info[:4], vocab, heads=True)
else:
    needs_gpt_keras("la atención de cada cabeza por separado")"""),

        ("md", """\
### La temperatura

El ejemplo de la clase: logits de *pfalz* 4.1, *mosel* 3.9 y *rhein* 2.7 después de
`wine review : germany :`, con softmax(*z* / *T*)."""),
        ("code", """\
logits = np.array([4.1, 3.9, 2.7])
for temperature in (0.5, 1.0, 1.5):
    probs = np.exp(logits / temperature)
    probs = probs / np.sum(probs)
    print(f"T = {temperature}: pfalz {probs[0]:.3f}, mosel {probs[1]:.3f}, rhein {probs[2]:.3f}")"""),
        ("md", """\
La diapositiva muestra 0.577 / 0.388 con *T* = 0.5 y 0.397 para *mosel* con *T* = 1.0; la cuenta da
0.578 / 0.387 y 0.396 (la misma que el ejemplo resuelto de la clase, 0.484 / 0.396 / 0.119). La
diferencia es el redondeo de la diapositiva, no de este modelo: estos números no dependen del
entrenamiento."""),
        ("code", """\
if HAVE_GPT_KERAS:
    temperature_table = slide_temperature_table(logits, (0.5, 1.0, 1.5))
    display(temperature_table)
else:
    needs_gpt_keras("la tabla «diapositiva | cuenta» de la temperatura")"""),
        ("md", """\
Ahora con nuestro modelo: el mismo prompt con *T* = 0.2, 0.5, 1.0, 1.5 y 3.0. Con el paquete, tres
muestras con semilla fija para cada una, con el generador con caché del paquete (`CachedGenerator`)
sobre **los mismos pesos** (`build_gpt` construye el mismo modelo), y para cada temperatura la
**perplejidad** de las muestras según el propio modelo (más alta = palabras que el modelo considera
improbables) y la proporción de palabras distintas (más baja = más repetición). Sin el paquete, una
muestra por temperatura con el `TextGenerator` de la clase."""),
        ("code", """\
PROMPT = "wine review : germany"
TEMPERATURES = (0.2, 0.5, 1.0, 1.5, 3.0)
if HAVE_GPT_KERAS:
    import pandas as pd

    from gpt_keras.core.config import GPTConfig
    from gpt_keras.core.data import Vocabulary
    from gpt_keras.core.generation import CachedGenerator
    from gpt_keras.core.model import build_gpt
    from gpt_keras.core.sampling import Sampler
    from gpt_keras.tools.batch_sampling import sample_batch

    config = GPTConfig(vocab_size=VOCAB_SIZE, max_len=MAX_LEN, embedding_dim=EMBEDDING_DIM, key_dim=KEY_DIM,
                       n_heads=N_HEADS, feed_forward_dim=FEED_FORWARD_DIM)
    fast_gpt = build_gpt(config)
    fast_gpt.set_weights(gpt.get_weights())  # los pesos que acabamos de entrenar
    generator = CachedGenerator(fast_gpt, Vocabulary(tuple(vocab)))
    rows = []
    for temperature in TEMPERATURES:
        batch = sample_batch(generator, PROMPT, n_samples=3, max_tokens=MAX_LEN,
                             sampler=Sampler(temperature=temperature), rng=np.random.default_rng(SEED))
        print(f"=== T = {temperature} ===")
        for text in batch.texts:
            print("-", text)
        new_words = [word for text in batch.texts for word in text.split()[len(PROMPT.split()):]]
        rows.append({
            "T": temperature,
            "perplexity": float(np.mean([np.exp(-np.nanmean(row)) for row in batch.log_probs])),
            "distinct words": len(set(new_words)) / max(len(new_words), 1),
            "mean length": float(np.mean(batch.lengths)),
        })
    display(pd.DataFrame(rows).set_index("T").round(2))
else:
    for temperature in TEMPERATURES:
        print(f"=== T = {temperature} ===")
        text_generator.generate(PROMPT, max_tokens=MAX_LEN, temperature=temperature)
    needs_gpt_keras("el barrido con tres muestras, perplejidad y palabras distintas por temperatura")"""),
        ("md", """\
### ¿Qué pasa si usas T = 3?

Dividir los logits entre 3 acerca mucho sus valores, así que la distribución queda **casi uniforme**:
en el ejemplo de la clase *rhein*, que con *T* = 0.5 tenía 3.5 %, sube a casi 25 %; en el vocabulario
completo, miles de palabras poco probables juntas reciben la mayor parte de la probabilidad. El
modelo entonces elige palabras casi al azar: mezcla países, regiones y variedades que no van juntos,
rompe el formato `wine review : país : provincia : variedad :` y produce texto **incoherente**, con
una perplejidad (según el propio modelo) mucho más alta que con *T* ≤ 1.

En el otro extremo, con *T* = 0.2 el modelo es casi determinista: las tres muestras se parecen
mucho y tienden a repetir frases. Alrededor de *T* = 1.0 se equilibran coherencia y variedad:

| Temperatura | Efecto | Texto generado |
|---|---|---|
| *T* < 0.5 | muy baja | casi determinista, repetitivo, seguro pero aburrido |
| *T* ≈ 1.0 | equilibrada | coherente con algo de diversidad |
| *T* > 1.2 | alta | más variado y creativo, con errores gramaticales o semánticos |
| *T* > 2.0 | muy alta | casi uniforme: palabras al azar, incoherente |

*(En los modos `quick` y `lecture` el modelo apenas entrenó y todas las temperaturas dan texto poco
coherente; la diferencia se ve bien con el modelo de la clase entrenado 5 épocas.)*"""),

        ("md", """\
### El laboratorio de temperatura, dentro de la celda

La misma lección en una página interactiva (un extra del paquete, con Gradio): escribe un prompt, mueve
la temperatura y mira cómo las barras de la siguiente palabra, «el resto» y la entropía se afilan o se
aplanan; muestrea palabra a palabra y haz clic en una para ver ese paso. En Colab se abre aquí mismo; en
Jupyter pon `SHOW_LAB = True`, o en una terminal `gpt-keras lab --run <la carpeta de una ejecución>`."""),
        ("code", """\
SHOW_LAB = "google.colab" in sys.modules  # en Jupyter: True para abrirlo aquí (necesita el extra [lab])
if not HAVE_GPT_KERAS:
    needs_gpt_keras("el laboratorio de temperatura dentro de la celda")
elif not SHOW_LAB:
    print("El laboratorio de temperatura: SHOW_LAB = True en esta celda para abrirlo aquí, "
          "o `gpt-keras lab --run <la carpeta de una ejecución>` en una terminal.")
else:
    from types import SimpleNamespace

    from gpt_keras.core.checks import GPTKerasError
    from gpt_keras.tools.lab import lab

    try:  # el modelo que acabamos de entrenar, con los pesos copiados a fast_gpt
        lab_page = lab(SimpleNamespace(model=fast_gpt, vocab=Vocabulary(tuple(vocab)), config=config))
    except GPTKerasError as error:  # sin Gradio, o sin puerto libre: una línea, y el cuaderno sigue
        print(error)"""),

        ("md", """\
## GPT-2 con Hugging Face <a name="gpt2"></a>

GPT-2 (124 M de parámetros) ya viene entrenado: se usa sin entrenarlo. Como en la clase:
`TFGPT2LMHeadModel` y `GPT2Tokenizer`, `model.generate(..., max_length=20)` y `pipeline`, con el
prompt "Machine learning is". Necesita `transformers` anterior a la versión 5 (la última con
`TFGPT2LMHeadModel`; el extra `[gpt2]` del paquete la instala). Los pesos (unos 500 MB) se descargan
la primera vez; sin red y sin una copia local, la celda lo dice y el resto del cuaderno sigue. (En la
terminal: `gpt-keras compare --prompt "Machine learning is"`.)"""),
        ("code", """\
GPT2_NAME = os.environ.get("GPT_KERAS_GPT2", "gpt2")  # "gpt2", "distilgpt2" o una carpeta de save_pretrained
gpt2 = None
if HAVE_GPT_KERAS:
    from gpt_keras.tools.gpt2.load import GPT2Error, load_gpt2

    try:
        gpt2 = load_gpt2(GPT2_NAME)  # comprueba que los pesos estén (o se puedan descargar)
    except GPT2Error as error:  # sin red y sin copia local: el mismo mensaje que da gpt-keras compare
        print(error)
else:
    try:
        from transformers import TFGPT2LMHeadModel

        gpt2 = TFGPT2LMHeadModel.from_pretrained(GPT2_NAME)
    except Exception as error:  # transformers 5 (sin TensorFlow), sin red o sin copia local: se dice y se sigue
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        print(f"GPT-2 {GPT2_NAME!r} no está disponible ({type(error).__name__}: {reason}); "
              'necesita pip install "transformers<5" tf-keras y red la primera vez')"""),
        ("code", """\
if gpt2 is not None:
    import transformers
    from transformers import GPT2Tokenizer, TFGPT2LMHeadModel

    transformers.logging.set_verbosity_error()  # sin los avisos de Hugging Face en la salida
    tokenizer = GPT2Tokenizer.from_pretrained(GPT2_NAME)
    model = TFGPT2LMHeadModel.from_pretrained(GPT2_NAME)

    texto = "Machine learning is"
    inputs = tokenizer(texto, return_tensors="tf")
    outputs = model.generate(inputs["input_ids"], max_length=20)
    print(tokenizer.decode(outputs[0]))"""),
        ("code", """\
if gpt2 is not None:
    from transformers import pipeline

    # framework="tf", dtype=None: sin PyTorch instalado, transformers 4.x lo necesita para usar TensorFlow
    generator = pipeline("text-generation", model=GPT2_NAME, framework="tf", dtype=None)
    print(generator("Machine learning is", max_length=30)[0]["generated_text"])"""),
        ("md", """\
Lado a lado: nuestro GPT de reseñas y GPT-2 con el mismo prompt. `gpt-keras compare --run RUN`
agrega la perplejidad de ambos sobre reseñas que no vieron y el tiempo por token."""),
        ("code", """\
if not HAVE_GPT_KERAS:
    needs_gpt_keras("la tabla de nuestro GPT al lado de GPT-2")
elif gpt2 is not None:
    from gpt_keras.tools.gpt2.generate import GPT2Generator

    side_prompt = "wine review : us"
    ours_info, ours_text = CachedGenerator(fast_gpt, Vocabulary(tuple(vocab))).generate(
        side_prompt, 40, Sampler(temperature=1.0), np.random.default_rng(SEED))
    gpt2_info, gpt2_text = GPT2Generator(gpt2).generate(side_prompt, 40, Sampler(temperature=1.0),
                                                         np.random.default_rng(SEED))
    display(pd.DataFrame({"parámetros": [f"{gpt.count_params():,}", f"{gpt2.count_params():,}"],
                          "texto": [ours_text, gpt2_text]}, index=["nuestro GPT", gpt2.name]))"""),

        ("md", """\
## Resumen: la clase y esta ejecución

Todas las cifras de «esta ejecución» salen de lo que se acaba de ejecutar."""),
        ("code", """\
if HAVE_GPT_KERAS:
    summary_table = lecture_table(reviews=n_wines, steps_per_epoch=steps_per_epoch, parameters=gpt.count_params(),
                                  loss=gpt.history.history["loss"],
                                  mosel_step_2=word_percent(info, vocab, step=2, word="mosel"))
    if banner:
        display(HTML(banner))
    display(summary_table)
else:
    needs_gpt_keras("la tabla resumen «clase | esta ejecución»")"""),
    ]


def build() -> nbformat.NotebookNode:
    notebook = new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    }
    for index, (kind, source) in enumerate(cells()):
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
            if ":" in kind:
                cell.metadata["tags"] = [kind.split(":", 1)[1]]
        cell.id = f"cell-{index:02d}"  # fixed ids: a rebuild of unchanged cells is byte-for-byte the same
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=NOTEBOOK, help=f"where to write (default {NOTEBOOK})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the notebook on disk is out of date")
    args = parser.parse_args(argv)
    text = nbformat.writes(build())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != text:
            print(f"{args.output} is out of date: run python scripts/build_notebook.py", file=sys.stderr)
            return 1
        return 0
    from gpt_keras.runs.files import write_text

    write_text(args.output, text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
