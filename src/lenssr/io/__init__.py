"""Reading and writing single images and walking files, folders and zip archives.

Exports are lazy: ``from lenssr.io import read_image`` imports only what it needs.
"""

from __future__ import annotations

from lenssr.lazy import exported_names, lazy_exports

_EXPORTS = {
    "lenssr.io.batch": [
        "BatchReport",
        "Cancelled",
        "InputItem",
        "WithSidecars",
        "ZipEntry",
        "ZipLimits",
        "check_zip_infos",
        "is_ignored_name",
        "iter_inputs",
        "open_inputs",
        "plan_members",
        "process_path",
        "sanitize_member_name",
        "zip_entries",
    ],
    "lenssr.io.images": [
        "EXTENSIONS",
        "ClippingWarning",
        "DecodeBudget",
        "LoadedImage",
        "ReadLimits",
        "encode_image",
        "image_format",
        "is_image_name",
        "read_image",
        "rescale_fits_header",
        "write_image",
    ],
}

__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
