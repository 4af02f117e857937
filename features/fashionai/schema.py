"""FashionAI vocabulary: keypoints (24 points, 5 categories) and attributes (8 tasks).

The names and orders here are those of the public challenge files: the keypoint
CSV header is ``image_id,image_category,`` followed by :data:`KEYPOINT_NAMES` in
this order, and each attribute label string has one character per class of
:data:`ATTRIBUTE_TASKS` in this order.

Examples
--------
>>> len(KEYPOINT_NAMES), KEYPOINT_NAMES[0]
(24, 'neckline_left')
>>> CATEGORY_KEYPOINTS["skirt"]
('waistband_left', 'waistband_right', 'hemline_left', 'hemline_right')
>>> len(ATTRIBUTE_TASKS["sleeve_length_labels"])
9
"""
from __future__ import annotations

KEYPOINT_NAMES: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front", "shoulder_left",
    "shoulder_right", "armpit_left", "armpit_right", "waistline_left",
    "waistline_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
    "cuff_right_out", "top_hem_left", "top_hem_right", "waistband_left",
    "waistband_right", "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)
KEYPOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(KEYPOINT_NAMES)}

#: Garment categories of the keypoint task, as spelled in the files ("outwear" sic).
KEYPOINT_CATEGORIES: tuple[str, ...] = ("blouse", "dress", "outwear", "skirt", "trousers")

#: Keypoints annotated for each category (all others are written ``-1_-1_-1``).
#: Checked against the real ``train.csv`` by the test suite.
CATEGORY_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "blouse": ("neckline_left", "neckline_right", "center_front", "shoulder_left",
               "shoulder_right", "armpit_left", "armpit_right", "cuff_left_in",
               "cuff_left_out", "cuff_right_in", "cuff_right_out", "top_hem_left",
               "top_hem_right"),
    "dress": ("neckline_left", "neckline_right", "center_front", "shoulder_left",
              "shoulder_right", "armpit_left", "armpit_right", "waistline_left",
              "waistline_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
              "cuff_right_out", "hemline_left", "hemline_right"),
    "outwear": ("neckline_left", "neckline_right", "shoulder_left", "shoulder_right",
                "armpit_left", "armpit_right", "waistline_left", "waistline_right",
                "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
                "top_hem_left", "top_hem_right"),
    "skirt": ("waistband_left", "waistband_right", "hemline_left", "hemline_right"),
    "trousers": ("waistband_left", "waistband_right", "crotch", "bottom_left_in",
                 "bottom_left_out", "bottom_right_in", "bottom_right_out"),
}

#: The pair of points whose distance normalises the NE metric, per category.
NORMALISING_PAIR: dict[str, tuple[str, str]] = {
    "blouse": ("armpit_left", "armpit_right"),
    "outwear": ("armpit_left", "armpit_right"),
    "dress": ("armpit_left", "armpit_right"),
    "skirt": ("waistband_left", "waistband_right"),
    "trousers": ("waistband_left", "waistband_right"),
}

#: Visibility codes of a keypoint cell ``x_y_v``.
VISIBLE, OCCLUDED, ABSENT = 1, 0, -1

#: The 8 attribute tasks as named in the files, with class names in label order.
ATTRIBUTE_TASKS: dict[str, tuple[str, ...]] = {
    "coat_length_labels": ("Invisible", "High Waist Length", "Regular Length",
                           "Long Length", "Micro Length", "Knee Length",
                           "Midi Length", "Ankle&Floor Length"),
    "collar_design_labels": ("Invisible", "Shirt Collar", "Peter Pan",
                             "Puritan Collar", "Rib Collar"),
    "lapel_design_labels": ("Invisible", "Notched", "Collarless", "Shawl Collar",
                            "Plus Size Shawl"),
    "neck_design_labels": ("Invisible", "Turtle Neck", "Ruffle Semi-High Collar",
                           "Low Turtle Neck", "Draped Collar"),
    "neckline_design_labels": ("Invisible", "Strapless Neck", "Deep V Neckline",
                               "Straight Neck", "V Neckline", "Square Neckline",
                               "Off Shoulder", "Round Neckline", "Sweat Heart Neck",
                               "One Shoulder Neckline"),
    "pant_length_labels": ("Invisible", "Short Pant", "Mid Length", "3/4 Length",
                           "Cropped Pant", "Full Length"),
    "skirt_length_labels": ("Invisible", "Short Length", "Knee Length", "Midi Length",
                            "Ankle Length", "Floor Length"),
    "sleeve_length_labels": ("Invisible", "Sleeveless", "Cup Sleeves", "Short Sleeves",
                             "Elbow Sleeves", "3/4 Sleeves", "Wrist Length",
                             "Long Sleeves", "Extra Long Sleeves"),
}

#: Short task names (``sleeve_length``) to file task names (``sleeve_length_labels``).
TASK_ALIASES: dict[str, str] = {t[: -len("_labels")]: t for t in ATTRIBUTE_TASKS}

#: Label characters: this class, maybe this class, not this class.
LABEL_YES, LABEL_MAYBE, LABEL_NO = "y", "m", "n"
