"""Readers for the acted-emotion speech corpora the project trains on.

Each reader walks one corpus in its standard download layout and returns one `Record` per clip,
with the emotion mapped onto the project's seven labels. Only file names are read, never audio,
so discovering a few thousand clips takes milliseconds.

Corpora and naming conventions:

- RAVDESS (Livingstone & Russo 2018): ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``. Only modality ``03``
  (audio-only) and vocal channel ``01`` (speech) are read; song (``02``) is skipped. "calm" has no
  label of its own and is merged into neutral, so neutral has twice as many clips.
- TESS (Dupuis & Pichora-Fuller 2010): ``OAF_back_angry.wav`` / ``YAF_back_ps.wav``, flat or in
  per-emotion folders. Two speakers, OAF and YAF, both female.
- CREMA-D (Cao et al. 2014): ``AudioWAV/1001_DFA_ANG_XX.wav``; gender from ``VideoDemographics.csv``.
- SAVEE (Haq & Jackson 2009): ``DC_a01.wav`` or ``AudioData/DC/a01.wav``; four male speakers.
- ASED (Retta et al. 2022), Amharic: ``01Neutral/n1-01-01-01-01.wav``, ``xn-yy-aa-gg-bb``: emotion
  letter and folder number, sentence, repetition, gender (01 female, 02 male), speaker.
- nEMO (Christop 2024), Polish: ``samples/EB0_anger_1.wav`` listed in ``data.tsv`` with speaker,
  gender and the sentence.
- TurEV-DB (Canpolat et al. 2020), Turkish: ``Angry/1157_kz_acik.wav``; calm counts as neutral.
- EmoDB (Burkhardt et al. 2005), German: ``wav/03a01Fa.wav``; boredom has no class here and is
  skipped (with a count in the log).
- A user manifest: a CSV with ``path,label[,speaker[,gender[,utterance]]]``.

Every record carries its corpus' label set: the emotions that corpus can contain. A corpus
without disgust says nothing about disgust, so training scores each clip over its own set only.

A file whose name does not follow its corpus' convention is skipped with one warning per corpus
(count and an example) rather than failing the whole corpus: real downloads carry stray files.
"""

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..audio_io import AUDIO_EXTENSIONS
from ..configuration import EMOTIONS
from ..errors import InputError


logger = logging.getLogger(__name__)

# The model's classes, in class-id order: one tuple, defined with the config.
LABELS = EMOTIONS


# Spellings seen in corpus documentation and user manifests, mapped onto LABELS.
LABEL_SYNONYMS = {
    "calm": "neutral",
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "ps": "surprise",
    "pleasant_surprise": "surprise",
    "pleasant_surprised": "surprise",
    "pleasant surprise": "surprise",
}

# RAVDESS emotion field (Livingstone & Russo 2018, "File naming convention").
_RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "neutral",  # calm: no separate label in this project
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
_RAVDESS_AUDIO_ONLY = "03"
_RAVDESS_SPEECH = "01"

# TESS speaker prefixes; "OA" is the one misnamed original file (OA_bite_neutral), which is OAF.
_TESS_SPEAKERS = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF", "YA": "YAF"}

_CREMA_D_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}

# SAVEE emotion prefixes; "sa" and "su" must be matched whole, never as "s" + something.
_SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprise",
}

# ASED emotion letters (Retta et al. 2022); the digit after the letter is only the folder number.
_ASED_EMOTIONS = {"n": "neutral", "f": "fear", "h": "happy", "s": "sad", "a": "angry"}
_ASED_GENDERS = {"01": "female", "02": "male"}

# TurEV-DB file codes (Canpolat et al. 2020); "calm" is this project's neutral.
_TUREV_EMOTIONS = {"kz": "angry", "sk": "neutral", "mt": "happy", "hl": "sad"}

# EmoDB emotion letters (Burkhardt et al. 2005, German initials): Wut, Ekel, Angst, Freude, Trauer,
# Neutral; L (Langeweile, boredom) has no class in this project.
_EMODB_EMOTIONS = {"W": "angry", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
_EMODB_BOREDOM = "L"
# EmoDB's ten speakers (corpus documentation): speaker number to gender.
_EMODB_GENDERS = {"03": "male", "08": "female", "09": "female", "10": "male", "11": "male", "12": "male",
                  "13": "female", "14": "female", "15": "male", "16": "female"}

# The emotions each corpus can contain (the model's other classes never occur in it).
LABEL_SETS = {
    "ravdess": LABELS,
    "tess": LABELS,
    "crema-d": ("angry", "disgust", "fear", "happy", "neutral", "sad"),
    "savee": LABELS,
    "ased": ("angry", "fear", "happy", "neutral", "sad"),
    "nemo": ("angry", "fear", "happy", "neutral", "sad", "surprise"),
    "turev": ("angry", "happy", "neutral", "sad"),
    "emodb": ("angry", "disgust", "fear", "happy", "neutral", "sad"),
}

_RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{2})$")
_SAVEE_FLAT_NAME = re.compile(r"^([A-Za-z]{2})_([A-Za-z]{1,2})(\d+)$")
_SAVEE_NESTED_NAME = re.compile(r"^([A-Za-z]{1,2})(\d+)$")
_SAVEE_SPEAKER_FOLDER = re.compile(r"^[A-Za-z]{2}$")
_ASED_NAME = re.compile(r"^([A-Za-z])\d-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_TUREV_NAME = re.compile(r"^(\d{4})_([a-z]{2})_(.+)$")
_EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")

# Folder names `discover` recognises (compared in lower case), per corpus.
_CORPUS_FOLDERS = {
    "ravdess": ("ravdess",),
    "tess": ("tess",),
    "crema-d": ("crema-d", "cremad", "crema_d"),
    "savee": ("savee",),
    "ased": ("ased", "ased_v1"),
    "nemo": ("nemo",),
    "turev": ("turev", "turev-db", "turev_db"),
    "emodb": ("emodb", "emo-db", "emo_db"),
}
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class Record:
    """One labelled clip.

    Args:
        path (`str`): absolute path of the audio file.
        corpus (`str`): a key of `LABEL_SETS` (`"ravdess"`, `"ased"`, ...) or `"manifest"`.
        speaker (`str`): speaker id, unique across corpora because it is prefixed with the corpus,
            e.g. `"ravdess:01"`, `"tess:OAF"`, `"crema-d:1001"`, `"savee:DC"`, `"nemo:EB0"`.
        label (`str`): one of `LABELS`.
        gender (`str` or `None`): `"male"`, `"female"`, or `None` when unknown.
        utterance (`str`): what was said, for splits that hold out sentences: the RAVDESS statement
            (`"01"`/`"02"`), the TESS word, the CREMA-D sentence code (e.g. `"DFA"`), the SAVEE
            sentence number, or a manifest's `utterance` column (else the file stem).
        relpath (`str`, *optional*, defaults to `""`): path relative to the corpus root folder (the
            manifest's folder for manifests), with `/` separators; `splits.record_key` uses it to
            name the clip independently of where the data lives.
        label_set (`tuple[str, ...]`, *optional*, defaults to `LABELS`): the emotions the clip's
            corpus can contain, in `LABELS` order; `label` is always one of them.
    """

    path: str
    corpus: str
    speaker: str
    label: str
    gender: str | None
    utterance: str
    relpath: str = ""
    label_set: tuple[str, ...] = LABELS


def normalize_label(name):
    """Maps a label or a known synonym (case-insensitive) onto `LABELS`, or returns `None`."""
    key = str(name).strip().lower()
    if key in LABELS:
        return key
    return LABEL_SYNONYMS.get(key)


def _is_audio(name):
    """Whether the extension is one of a container soundfile or FFmpeg can decode. Whether the file
    really decodes is the audio I/O layer's concern; here the extension only tells audio from the
    notes, CSVs and videos that corpus downloads carry."""
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _audio_files(folder, recursive=True):
    """Yields the audio files under `folder` in sorted order, skipping hidden files and folders.

    Hidden entries are skipped because macOS archives carry `._name.wav` resource forks that have
    an audio extension but hold no audio.
    """
    folder = Path(folder)
    if not recursive:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        yield from (folder / n for n in names if _is_audio(n) and (folder / n).is_file())
        return
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _is_audio(name):
                yield Path(current) / name


def _check_folder(root, corpus):
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{corpus} folder {str(root)!r} does not exist or is not a directory")
    return root.resolve()


def _relpath(path, root):
    return path.relative_to(root).as_posix()


def _warn_skipped(corpus, root, skipped):
    """Logs once per corpus how many files were skipped, with one example to recognise them by."""
    if skipped:
        logger.warning(
            "%s: skipped %d audio file(s) under %s whose names do not follow the corpus naming, e.g. %r",
            corpus,
            len(skipped),
            root,
            skipped[0],
        )


# What a reader's name parser returns for a valid file of the corpus that is not the part used
# here (RAVDESS song or video-audio): left out without a warning.
_NOT_USED = object()


def _collect(corpus, display_name, root, paths, parse):
    """Records for the files whose names `parse` reads.

    `parse(path)` returns `(speaker, label, gender, utterance)`, `None` for a name it cannot read
    (counted, and warned about once per corpus), or `_NOT_USED`.
    """
    records, skipped = [], []
    for path in paths:
        parsed = parse(path)
        if parsed is _NOT_USED:
            continue
        if parsed is None:
            skipped.append(_relpath(path, root))
            continue
        speaker, label, gender, utterance = parsed
        records.append(Record(path=str(path), corpus=corpus, speaker=f"{corpus}:{speaker}", label=label,
                              gender=gender, utterance=utterance, relpath=_relpath(path, root),
                              label_set=LABEL_SETS[corpus]))
    _warn_skipped(display_name, root, skipped)
    return records


def read_ravdess(root):
    """Reads the speech audio-only part of RAVDESS.

    Args:
        root (`str` or `os.PathLike`): folder holding `Actor_01` ... `Actor_24` (any depth).

    Returns:
        `list[Record]`: one record per speech clip; song and video files are left out. Odd actors
        are male, even actors female (the corpus' own convention).
    """
    root = _check_folder(root, "RAVDESS")

    def parse(path):
        match = _RAVDESS_NAME.match(path.stem)
        if match is None or match.group(3) not in _RAVDESS_EMOTIONS or match.group(7) == "00":
            return None
        modality, channel, emotion, _, statement, _, actor = match.groups()
        # Song and audio-from-video clips are valid RAVDESS files, just not the part we use.
        if modality != _RAVDESS_AUDIO_ONLY or channel != _RAVDESS_SPEECH:
            return _NOT_USED
        return actor, _RAVDESS_EMOTIONS[emotion], "male" if int(actor) % 2 else "female", statement

    return _collect("ravdess", "RAVDESS", root, _audio_files(root), parse)


def _parse_tess_name(stem):
    """Returns `(speaker, word, label)` for a TESS file stem, or `None` if it is not one."""
    tokens = stem.split("_")
    # "pleasant_surprise(d)" is the only emotion spelled with an underscore; words have none.
    if len(tokens) >= 4 and "_".join(tokens[-2:]).lower() in LABEL_SYNONYMS:
        emotion, head = "_".join(tokens[-2:]), tokens[:-2]
    else:
        emotion, head = tokens[-1], tokens[:-1]
    label = normalize_label(emotion)
    if len(head) != 2 or label is None or not head[1]:
        return None
    speaker = _TESS_SPEAKERS.get(head[0].upper())
    if speaker is None:
        return None
    return speaker, head[1].lower(), label


def read_tess(root):
    """Reads TESS, flat or in per-emotion folders (`OAF_angry/`, `YAF_pleasant_surprised/`).

    Args:
        root (`str` or `os.PathLike`): the TESS folder.

    Returns:
        `list[Record]`: one record per clip; the emotion comes from the file name, not the folder.
        Both speakers are female; the utterance is the spoken word.
    """
    root = _check_folder(root, "TESS")

    def parse(path):
        parsed = _parse_tess_name(path.stem)
        if parsed is None:
            return None
        speaker, word, label = parsed
        return speaker, label, "female", word

    return _collect("tess", "TESS", root, _audio_files(root), parse)


def _read_crema_d_genders(root):
    """Returns `{actor id: "male" | "female"}` from `VideoDemographics.csv` in `root` or its parent."""
    for folder in (root, root.parent):
        path = folder / "VideoDemographics.csv"
        if path.is_file():
            # utf-8-sig: the file is sometimes saved with a byte-order mark before "ActorID".
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
            genders = {}
            for row in rows:
                actor = (row.get("ActorID") or "").strip()
                sex = (row.get("Sex") or "").strip().lower()
                if actor and sex in ("male", "female"):
                    genders[actor] = sex
            return genders
    logger.warning("CREMA-D: no VideoDemographics.csv in %s or its parent; gender is unknown", root)
    return {}


def read_crema_d(root):
    """Reads CREMA-D from `root/AudioWAV/` or, when there is no such folder, from `root` itself.

    Only that one folder is read, because the full CREMA-D repository also holds the same clips
    as MP3 under `AudioMP3/`, which would count every clip twice.

    Args:
        root (`str` or `os.PathLike`): the CREMA-D folder.

    Returns:
        `list[Record]`: one record per clip; the utterance is the sentence code (e.g. `"DFA"`), the
        gender comes from `VideoDemographics.csv` (in `root` or its parent), else `None`.
    """
    root = _check_folder(root, "CREMA-D")
    audio_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.lower() == "audiowav"]
    audio_dir = audio_dirs[0] if audio_dirs else root
    genders = _read_crema_d_genders(root)

    def parse(path):
        match = _CREMA_D_NAME.match(path.stem)
        label = _CREMA_D_EMOTIONS.get(match.group(3).upper()) if match else None
        if label is None:
            return None
        actor = match.group(1)
        return actor, label, genders.get(actor), match.group(2).upper()

    return _collect("crema-d", "CREMA-D", root, _audio_files(audio_dir, recursive=False), parse)


def _parse_savee_name(path):
    """Returns `(speaker, code, number)` for a SAVEE file, flat or nested, or `None`."""
    match = _SAVEE_FLAT_NAME.match(path.stem)
    if match is not None:
        return match.group(1).upper(), match.group(2).lower(), match.group(3)
    match = _SAVEE_NESTED_NAME.match(path.stem)
    if match is not None and _SAVEE_SPEAKER_FOLDER.match(path.parent.name):
        return path.parent.name.upper(), match.group(1).lower(), match.group(2)
    return None


def read_savee(root):
    """Reads SAVEE, flat (`DC_a01.wav`) or nested (`AudioData/DC/a01.wav`).

    Args:
        root (`str` or `os.PathLike`): the SAVEE folder.

    Returns:
        `list[Record]`: one record per clip; all four speakers are male. The utterance is the
        sentence number: SAVEE's three common sentences share their number across emotions, so
        grouping by number keeps them together (it also groups some unrelated sentences, which
        only makes a sentence-held-out split stricter).
    """
    root = _check_folder(root, "SAVEE")

    def parse(path):
        parsed = _parse_savee_name(path)
        label = _SAVEE_EMOTIONS.get(parsed[1]) if parsed else None
        if label is None:
            return None
        speaker, _, number = parsed
        return speaker, label, "male", number

    return _collect("savee", "SAVEE", root, _audio_files(root), parse)


def read_ased(root):
    """Reads ASED v1, the Amharic Speech Emotional Dataset (`01Neutral/` ... `05Angry/`).

    Args:
        root (`str` or `os.PathLike`): the ASED folder.

    Returns:
        `list[Record]`: one record per clip, with the speaker and gender from the file name (one
        original file starts with a capital letter, which is read like the others); the utterance is
        the sentence number.
    """
    root = _check_folder(root, "ASED")

    def parse(path):
        match = _ASED_NAME.match(path.stem)
        label = _ASED_EMOTIONS.get(match.group(1).lower()) if match else None
        if label is None or match.group(4) not in _ASED_GENDERS:
            return None
        _, sentence, _, gender, speaker = match.groups()
        return speaker, label, _ASED_GENDERS[gender], sentence

    return _collect("ased", "ASED", root, _audio_files(root), parse)


def _read_nemo_table(root):
    """Returns `{file stem: row}` from nEMO's `data.tsv`, with the speaker's padding stripped."""
    table = root / "data.tsv"
    if not table.is_file():
        raise InputError(f"nEMO folder {str(root)!r} has no data.tsv: it holds the speakers and labels")
    with open(table, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {Path(row["file_id"].strip()).stem: {k: (v or "").strip() for k, v in row.items()} for row in rows}


def read_nemo(root):
    """Reads nEMO (Polish): the clips under `root` that `data.tsv` lists, whatever their extension.

    Args:
        root (`str` or `os.PathLike`): the nEMO folder, holding `data.tsv` and `samples/`.

    Returns:
        `list[Record]`: one record per listed clip, with the speaker, gender and emotion of its row;
        the utterance is the normalised sentence, so a sentence-held-out split keeps a sentence's
        recordings together. Audio files without a row are skipped with a warning.
    """
    root = _check_folder(root, "nEMO")
    rows = _read_nemo_table(root)

    def parse(path):
        row = rows.get(path.stem)
        label = normalize_label(row["emotion"]) if row else None
        if label is None or not row.get("speaker_id"):
            return None
        gender = row.get("gender", "").lower()
        return (row["speaker_id"], label, gender if gender in ("male", "female") else None,
                row.get("normalized_text") or path.stem)

    return _collect("nemo", "nEMO", root, _audio_files(root), parse)


def read_turev(root):
    """Reads TurEV-DB (Turkish single words), `Angry/`, `Calm/`, `Happy/`, `Sad/`.

    Args:
        root (`str` or `os.PathLike`): the TurEV-DB folder.

    Returns:
        `list[Record]`: one record per clip; calm is neutral, the emotion comes from the file's code
        (the folder says the same), gender is unknown, and the utterance is the word.
    """
    root = _check_folder(root, "TurEV-DB")

    def parse(path):
        match = _TUREV_NAME.match(path.stem)
        label = _TUREV_EMOTIONS.get(match.group(2)) if match else None
        if label is None:
            return None
        speaker, _, word = match.groups()
        return speaker, label, None, word.lower()

    return _collect("turev", "TurEV-DB", root, _audio_files(root), parse)


def read_emodb(root):
    """Reads EmoDB, the Berlin Database of Emotional Speech (`wav/03a01Fa.wav`, any depth).

    Args:
        root (`str` or `os.PathLike`): the EmoDB folder.

    Returns:
        `list[Record]`: one record per clip of the six emotions this project has; boredom clips are
        skipped and counted in the log. The speaker is the first two digits, the utterance the text
        code (e.g. `"a01"`).
    """
    root = _check_folder(root, "EmoDB")
    boredom = []

    def parse(path):
        match = _EMODB_NAME.match(path.stem)
        if match is None or match.group(1) not in _EMODB_GENDERS:
            return None
        speaker, text, emotion, _ = match.groups()
        if emotion == _EMODB_BOREDOM:
            boredom.append(path)
            return _NOT_USED
        label = _EMODB_EMOTIONS.get(emotion)
        return None if label is None else (speaker, label, _EMODB_GENDERS[speaker], text)

    records = _collect("emodb", "EmoDB", root, _audio_files(root), parse)
    if boredom:
        logger.info("EmoDB: skipped %d boredom clip(s): boredom is not one of this project's emotions", len(boredom))
    return records


def _normalize_gender(value, where):
    key = (value or "").strip().lower()
    if not key:
        return None
    if key in ("m", "male", "man"):
        return "male"
    if key in ("f", "female", "woman"):
        return "female"
    raise InputError(f"{where}: gender must be male, female or empty, got {value!r}")


def read_manifest(csv_path):
    """Reads a user manifest: a CSV with a header row `path,label[,speaker[,gender[,utterance]]]`.

    Without a `speaker` column every file becomes its own speaker (`"manifest:<file stem>"`), so no
    split can keep a speaker's clips together: results are then not speaker-independent. Give
    speakers whenever they are known.

    Args:
        csv_path (`str` or `os.PathLike`): the manifest. Relative paths in it are resolved against
            the manifest's folder.

    Returns:
        `list[Record]`: one record per row, in file order, with `corpus="manifest"`.

    Raises:
        `ValueError`: naming the line and value, for a missing column, an unknown label (synonyms
        such as calm, fearful or surprised are accepted), a missing or non-audio file, or a bad
        gender.
    """
    csv_path = Path(csv_path).resolve()
    if not csv_path.is_file():
        raise InputError(f"manifest {str(csv_path)!r} does not exist")
    rows = _read_manifest_rows(csv_path)
    if not any(row.get("speaker") for row in rows):
        logger.warning(
            "manifest %s gives no speakers: each file is its own speaker, so splits cannot be "
            "speaker-independent; add a speaker column",
            csv_path.name,
        )
    # A manifest states no label set: the labels it uses are the ones it can contain.
    label_set = tuple(label for label in LABELS if label in {normalize_label(row.get("label")) for row in rows})
    return [_manifest_record(row, f"manifest {csv_path.name} line {line}", csv_path.parent, label_set)
            for line, row in enumerate(rows, start=2)  # line 1 is the header
            if any(row.values())]


def _read_manifest_rows(csv_path):
    """The manifest's rows as dicts with lower-case column names and stripped values.

    Raises:
        `ValueError`: when the header lacks `path` or `label`.
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if any(c not in columns for c in ("path", "label")):
            raise InputError(f"manifest {csv_path.name} needs a header with path and label, got {columns}")
        return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _manifest_audio_path(row, base, where):
    """The row's audio file, resolved against the manifest's folder `base`; `where` names the row in errors."""
    if not row["path"]:
        raise InputError(f"{where}: path is empty")
    path = (base / row["path"]).resolve()
    if not path.is_file():
        raise InputError(f"{where}: file {row['path']!r} does not exist (looked at {str(path)!r})")
    if not _is_audio(path.name):
        raise InputError(f"{where}: file {row['path']!r} does not have an audio extension")
    return path


def _manifest_record(row, where, base, label_set):
    """The `Record` of one manifest row, checked field by field; `where` names the row in errors."""
    label = normalize_label(row["label"])
    if label is None:
        raise InputError(f"{where}: label {row['label']!r} is not one of {', '.join(LABELS)} or a known synonym")
    path = _manifest_audio_path(row, base, where)
    return Record(
        path=str(path),
        corpus="manifest",
        speaker=f"manifest:{row.get('speaker') or path.stem}",
        label=label,
        gender=_normalize_gender(row.get("gender"), where),
        utterance=row.get("utterance") or path.stem,
        relpath=Path(os.path.relpath(path, base)).as_posix(),
        label_set=label_set,
    )


_READERS = {
    "ravdess": read_ravdess,
    "tess": read_tess,
    "crema-d": read_crema_d,
    "savee": read_savee,
    "ased": read_ased,
    "nemo": read_nemo,
    "turev": read_turev,
    "emodb": read_emodb,
}


def _find_corpus_folders(data_dir):
    """Returns `{corpus: folder}` for the sub-folders of `data_dir` named after a corpus."""
    found = {}
    for entry in sorted(data_dir.iterdir()):
        if not entry.is_dir():
            continue
        for corpus, names in _CORPUS_FOLDERS.items():
            if entry.name.lower() in names:
                if corpus in found:
                    # Two copies would give every clip twice under one key.
                    raise InputError(
                        f"{str(data_dir)!r} holds two {corpus} folders, {found[corpus].name!r} and "
                        f"{entry.name!r}; keep one"
                    )
                found[corpus] = entry
    return found


def discover(data_dir):
    """Reads every corpus found in `data_dir`.

    Sub-folders are recognised by their conventional names, case-insensitively: `ravdess`, `tess`,
    `crema-d` (or `cremad`, `crema_d`), `savee`, `ased`, `nemo`, `turev` (or `turev-db`) and
    `emodb` (or `emo-db`); a `manifest.csv` in `data_dir` is read too. Absent corpora are simply
    left out.

    Args:
        data_dir (`str` or `os.PathLike`): the folder holding the corpora.

    Returns:
        `list[Record]`: all records, sorted by path so that every run sees the same order.

    Raises:
        `ValueError`: when `data_dir` does not exist or holds no corpus folder, manifest or clip.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data directory {str(data_dir)!r} does not exist")
    data_dir = data_dir.resolve()
    folders = _find_corpus_folders(data_dir)
    manifest = data_dir / MANIFEST_NAME
    if not folders and not manifest.is_file():
        raise InputError(
            f"found no corpus in {str(data_dir)!r}: expected a folder named {', '.join(_CORPUS_FOLDERS)} "
            f"or a {MANIFEST_NAME}"
        )
    records = []
    for corpus, folder in folders.items():
        records.extend(_READERS[corpus](folder))
    if manifest.is_file():
        records.extend(read_manifest(manifest))
    if not records:
        raise InputError(f"found no audio clips in the corpus folders of {str(data_dir)!r}")
    return sorted(records, key=lambda r: r.path)


__all__ = [
    "AUDIO_EXTENSIONS",
    "LABELS",
    "LABEL_SETS",
    "LABEL_SYNONYMS",
    "Record",
    "discover",
    "normalize_label",
    "read_ased",
    "read_crema_d",
    "read_emodb",
    "read_manifest",
    "read_nemo",
    "read_ravdess",
    "read_savee",
    "read_tess",
    "read_turev",
]
