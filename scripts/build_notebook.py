"""Builds notebooks/gpt_listo_para_entrenar.ipynb, the lecture's notebook, from the cells below.

The notebook is generated so that it stays reproducible and reviewable: edit this file, run
`python scripts/build_notebook.py`, and commit both. The notebook is written without outputs and
with fixed cell ids, so rebuilding an unchanged notebook changes nothing. `--check` exits 1 when
the committed notebook differs from what this script would write (for CI).

Markdown is in Spanish for the students; code and names are in English, as in the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "gpt_listo_para_entrenar.ipynb"

CELLS: list[tuple[str, str]] = [
    ("md", """\
# GPT listo para entrenar: reseñas de vino

Modelos Generativos Profundos, *Transformers III*. Este cuaderno sigue la clase celda por celda,
pero el código de cada pieza vive en el paquete `gpt_keras` (un módulo por concepto de la clase:
`data`, `layers`, `model`, `callbacks`, `sampling`, `viz`), así que aquí sólo lo usamos.

Pasos: **0.** parámetros, **1.** cargar los datos, **2.** tokenizar, **3.** conjunto de entrenamiento,
**4.** máscara causal, **5.** bloque Transformer y embedding posicional, **6.** construir el modelo,
**7.** entrenar, **8.** generar texto y mirar la atención, **9.** experimento de temperatura.

> **Modo rápido.** Entrenar el modelo de la clase (5,8 M de parámetros, 130 mil reseñas, 5 épocas)
> toma unos 10 minutos en una GPU y horas en una CPU. Con `QUICK = True` (o la variable de entorno
> `GPT_KERAS_QUICK=1`) el cuaderno usa un modelo diminuto, unas pocas reseñas y una época: corre en
> un minuto, aunque el texto generado no tendrá mucho sentido."""),

    ("md", "## 0. Parámetros"),
    ("params", """\
QUICK = False  # True: modelo diminuto, pocas reseñas y 1 época (un minuto en CPU)
SEED = 42
QUICK_REVIEWS = 2000  # reseñas que se usan en modo rápido
MAX_TOKENS = 80  # largo del texto generado, prompt incluido (como en la clase)
LOG_DIR = "runs/notebook/logs"  # registros de TensorBoard"""),

    ("code", """\
import os

if os.environ.get("GPT_KERAS_QUICK") == "1":  # los tests y la integración continua corren el modo rápido
    QUICK = True

import keras
import numpy as np
import pandas as pd

from gpt_keras.core.callbacks import TextGenerator
from gpt_keras.core.config import GPTConfig
from gpt_keras.core.data import Vocabulary, make_dataset, make_vectorizer, shift_for_language_model, vectorize
from gpt_keras.runs.datasets import default_data_path, load_texts
from gpt_keras.core.generation import CachedGenerator
from gpt_keras.tools.batch_sampling import sample_batch
from gpt_keras.core.layers import TokenAndPositionEmbedding, TransformerBlock, causal_attention_mask
from gpt_keras.core.model import build_gpt, compile_gpt
from gpt_keras.core.sampling import Sampler, softmax
from gpt_keras.tools.viz import attention_heatmap, print_probs

keras.utils.set_random_seed(SEED)
print("Keras", keras.__version__, "con backend", keras.backend.backend(), "| modo rápido:", QUICK)"""),

    ("md", """\
Todos los hiperparámetros viven en un `GPTConfig`. Los valores por defecto son los de la clase:
vocabulario de 10 000 palabras, secuencias de 80 tokens, embedding de 256, 2 cabezas de atención
con `key_dim` 256, red feed-forward de 256, dropout 0.1, lotes de 32 y 5 épocas."""),
    ("code", """\
config = GPTConfig.preset("tiny", epochs=1, seed=SEED) if QUICK else GPTConfig(seed=SEED)
config"""),

    ("md", """\
## 1. Cargar los datos

Usamos el conjunto de datos *Wine Reviews* de Kaggle (`winemag-data-130k-v2.json`). Si no está
descargado (`gpt-keras download`), `default_data_path()` devuelve la muestra que viene con el
repositorio (`data/wine-reviews-sample.json`).

Cada reseña se convierte en un texto `wine review : {país} : {provincia} : {variedad} : {descripción}`;
se descartan las que no tienen alguno de esos cuatro campos, y la puntuación se separa con espacios
para que cada signo sea una palabra."""),
    ("code", """\
data_path, data_source = default_data_path()
print(f"datos: {data_path} ({data_source})")
texts, report = load_texts(data_path)
print(report.summary())
if QUICK:
    texts = texts[:QUICK_REVIEWS]
print(f"{len(texts):,} reseñas para entrenar")"""),
    ("code", """\
example = texts[25] if len(texts) > 25 else texts[0]
print(example)"""),

    ("md", """\
## 2. Tokenizar

Una capa `TextVectorization` pasa el texto a minúsculas, se queda con las `vocab_size` palabras más
frecuentes y convierte cada reseña en `max_len + 1` índices: el 0 es el relleno (*padding*) y el 1 es
`[UNK]`, la palabra desconocida."""),
    ("code", """\
vectorizer = make_vectorizer(texts, vocab_size=config.vocab_size, max_len=config.max_len)
vocab = vectorizer.get_vocabulary()
if len(vocab) < config.vocab_size:  # con pocos datos hay menos palabras distintas que vocab_size
    config = config.replace(vocab_size=len(vocab))  # la capa de salida tendrá una neurona por palabra
print(len(vocab), "palabras; las primeras:", [str(word) for word in vocab[:12]])"""),
    ("code", """\
example_tokenised = vectorizer(example).numpy()
print(example_tokenised)
print(" ".join(f"{vocab[i]}({i})" for i in example_tokenised[:12]))"""),

    ("md", """\
## 3. Conjunto de entrenamiento

El modelo aprende a predecir la **siguiente palabra**: la entrada `x` son los tokens sin el último y
la salida `y` son los mismos tokens desplazados una posición (`x = tokens[:-1]`, `y = tokens[1:]`)."""),
    ("code", """\
tokens = vectorize(vectorizer, texts)
train_ds = make_dataset(tokens, batch_size=config.batch_size, seed=SEED)
x, y = shift_for_language_model(tokens[:1])
print("x:", x[0][:8], "...\\ny:", y[0][:8], "...")
print(tokens.shape[0], "reseñas de", tokens.shape[1], "tokens ->", len(train_ds), "lotes por época")"""),

    ("md", """\
## 4. Máscara de atención causal

Al predecir la palabra *i*, el modelo sólo puede mirar las palabras 0..*i*: la máscara es una matriz
triangular inferior (1 = se puede mirar)."""),
    ("code", "np.asarray(causal_attention_mask(1, 5, 5, dtype=\"int32\"))[0]"),

    ("md", """\
## 5. Bloque Transformer y embedding posicional

`TokenAndPositionEmbedding` suma el embedding de cada palabra y el de su posición.
`TransformerBlock` aplica atención multi-cabeza con la máscara causal, *dropout*, conexión residual y
`LayerNormalization`, y luego una red feed-forward con lo mismo. Además de su salida devuelve los
**pesos de atención de cada cabeza**: con ellos veremos dónde mira el modelo. El código está en
`gpt_keras/core/layers.py`."""),
    ("code", """\
block = TransformerBlock(num_heads=config.n_heads, key_dim=config.key_dim, embed_dim=config.embedding_dim,
                         ff_dim=config.feed_forward_dim)
embedded = TokenAndPositionEmbedding(config.max_len, config.vocab_size, config.embedding_dim)(x[:, :6])
output, attention = block(embedded)
print("salida:", output.shape, "| atención [lote, cabezas, consulta, clave]:", attention.shape)"""),

    ("md", """\
## 6. Construir el modelo

Entrada de tokens → embedding → bloque Transformer → capa densa con softmax sobre el vocabulario.
El modelo tiene dos salidas, `[probabilidades de la siguiente palabra, atención]`, y la pérdida
(entropía cruzada categórica dispersa) sólo se aplica a la primera. Con la configuración de la clase
son 5 809 168 parámetros."""),
    ("code", """\
gpt = compile_gpt(build_gpt(config), config)
gpt.summary()"""),

    ("md", """\
## 7. Entrenar

`TextGenerator` es el callback de la clase: al final de cada época genera un texto a partir de
`"wine review"` con temperatura 1.0 y lo imprime (`generated text:`). `TensorBoard` guarda la curva
de pérdida; para verla: `%load_ext tensorboard` y `%tensorboard --logdir runs/notebook/logs`."""),
    ("code", """\
tensorboard_callback = keras.callbacks.TensorBoard(log_dir=LOG_DIR)
text_generator = TextGenerator(vocab, prompt="wine review", max_tokens=MAX_TOKENS, temperature=1.0, seed=SEED)"""),
    ("code", """\
gpt.fit(
    train_ds,
    epochs=config.epochs,
    callbacks=[tensorboard_callback, text_generator],
)"""),

    ("md", """\
## 8. Generar texto

La generación es **autorregresiva**: se pasa el prompt, se obtienen las probabilidades de la
siguiente palabra, se **muestrea** una palabra de esa distribución, se agrega al prompt y se repite,
hasta `max_tokens` tokens o hasta que sale el relleno (índice 0).

La **temperatura** *T* cambia la forma de la distribución: $p_i = e^{z_i/T} / \\sum_j e^{z_j/T}$.
Con *T* < 1 se concentra en las palabras más probables; con *T* > 1 se aplana."""),
    ("code", """\
info = text_generator.generate("wine review : us", max_tokens=MAX_TOKENS, temperature=1.0)"""),
    ("code", """\
info = text_generator.generate("wine review : italy", max_tokens=MAX_TOKENS, temperature=0.5)"""),

    ("md", """\
### ¿Dónde mira el modelo?

`print_probs` muestra, para cada paso, el prompt con el fondo de cada palabra en azul según la
atención que le prestó la última posición (promedio de las cabezas, dividido por el máximo: más
intenso = más atención), y las 5 palabras siguientes más probables. En la clase, después de
`wine review : germany :` el modelo atiende sobre todo a **germany** y propone regiones alemanas
(mosel 92.43%, rheinhessen 6.03%, ...)."""),
    ("code", """\
info = text_generator.generate("wine review : germany", max_tokens=MAX_TOKENS, temperature=0.5)
print_probs(info, vocab)"""),

    ("md", """\
El bloque devuelve la atención **de cada cabeza**: con `heads=True` se ve cada una por separado
(cada cabeza normalizada por su propio máximo). Suelen especializarse: una mira el país, otra los
dos puntos o la palabra anterior. El mapa de calor resume todos los pasos a la vez: cada fila es un
paso de la generación y cada columna una palabra del texto."""),
    ("code", """\
print_probs(info[:4], vocab, heads=True)"""),
    ("code", """\
from IPython.display import Image

heatmap = attention_heatmap(info[:20], "runs/notebook/attention.png")
Image(filename=str(heatmap))"""),

    ("md", """\
## 9. Experimento: la temperatura

Primero el ejemplo de la clase: logits de *pfalz* 4.1, *mosel* 3.9 y *rhein* 2.7 después de
`wine review : germany :`."""),
    ("code", """\
logits = np.array([4.1, 3.9, 2.7])
pd.DataFrame({f"T={t}": softmax(logits, t) for t in (0.5, 1.0, 1.5, 3.0)},
             index=["pfalz", "mosel", "rhein"]).round(3)"""),
    ("md", """\
Ahora con nuestro modelo: el mismo prompt con *T* = 0.2, 0.5, 1.0, 1.5 y 3.0, tres muestras con
semilla fija para cada una. Para cada temperatura medimos la **perplejidad** de las muestras según el
propio modelo (sin temperatura; más alta = palabras que el modelo considera improbables) y la
proporción de palabras distintas (más baja = más repetición)."""),
    ("code", """\
PROMPT = "wine review : germany"
TEMPERATURES = (0.2, 0.5, 1.0, 1.5, 3.0)
generator = CachedGenerator(gpt, Vocabulary(tuple(vocab)))
rows = []
for temperature in TEMPERATURES:
    batch = sample_batch(generator, PROMPT, n_samples=3, max_tokens=MAX_TOKENS,
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
pd.DataFrame(rows).set_index("T").round(2)"""),

    ("md", """\
### ¿Qué pasa si usas T = 3?

Dividir los logits entre 3 acerca mucho sus valores, así que la distribución queda **casi uniforme**:
en el ejemplo de la clase *rhein*, que con *T* = 0.5 tenía 3.5 %, sube a casi 25 %; en el vocabulario
completo, miles de palabras poco probables juntas reciben la mayor parte de la probabilidad. El
modelo entonces elige palabras casi al azar: mezcla países, regiones y variedades que no van juntos,
rompe el formato `wine review : país : provincia : variedad :` y produce texto **incoherente**, con
una perplejidad (según el propio modelo) mucho más alta que con *T* ≤ 1.

En el otro extremo, con *T* = 0.2 el modelo es casi determinista: las tres muestras se parecen
mucho y tienden a repetir frases (menos palabras distintas). Alrededor de *T* = 1.0 se equilibran
coherencia y variedad, como en la tabla de la clase:

| Temperatura | Efecto | Texto generado |
|---|---|---|
| *T* < 0.5 | muy baja | casi determinista, repetitivo, seguro pero aburrido |
| *T* ≈ 1.0 | equilibrada | coherente con algo de diversidad |
| *T* > 1.2 | alta | más variado y creativo, con errores gramaticales o semánticos |
| *T* > 2.0 | muy alta | casi uniforme: palabras al azar, incoherente |

*(En modo rápido el modelo apenas entrenó y todas las temperaturas dan texto poco coherente; la
diferencia se ve bien con el modelo de la clase entrenado 5 épocas.)*"""),
]


def build() -> nbformat.NotebookNode:
    notebook = new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    }
    for index, (kind, source) in enumerate(CELLS):
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
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
    sys.path.insert(0, str(REPO))
    from gpt_keras.runs.files import write_text

    write_text(args.output, text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
