"""The file extensions this project reads as audio, in a module of their own so that the CLI can find audio
files in folders (and refuse what is not there) before it imports numpy, torch or the decoders."""

# Container/codec extensions that libsndfile cannot decode; for these, a missing FFmpeg is
# the reason a file fails, rather than the file being corrupt.
FFMPEG_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".aac", ".mp4", ".mov", ".3gp", ".3g2", ".webm", ".mkv", ".mka", ".wma",
     ".asf", ".amr", ".ac3", ".ape", ".wv"}
)

# Every extension a folder search treats as audio: what libsndfile decodes, plus the above.
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}
                             | FFMPEG_EXTENSIONS)


__all__ = ["AUDIO_EXTENSIONS", "FFMPEG_EXTENSIONS"]
