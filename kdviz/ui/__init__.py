"""The UI layer, the only part of kdviz that imports streamlit: pages call `ui.<name>` for everything below."""
from kdviz.ui import core  # noqa: F401 — ui.core is part of the layer's surface
from kdviz.ui.core import (  # noqa: F401
    LECTURE_CSS,
    LECTURE_MODE_KEY,
    PAGES,
    _default_teacher_task,
    client_address,
    default_teacher_task,
    lecture_mode,
    lecture_style,
    owner_id,
    require_router,
    run_app,
    run_manager,
    seed,
    sidebar,
    sync_query_params,
)
from kdviz.ui.models import (  # noqa: F401
    dataset,
    students,
    teacher,
    teacher_name,
    teacher_progress,
    teacher_task,
    test_pixels,
)
from kdviz.ui.soft_labels import (  # noqa: F401
    SOFT_LABELS_STATE,
    SOFT_LABELS_WIDGET,
    apply_released_controls,
    custom_logits_editor,
    image_example,
    image_logits,
    mistakes_panel,
    share_caption,
    soft_labels_state,
    update_soft_labels_state,
)
from kdviz.ui.components import released_values, soft_labels_widget  # noqa: F401
from kdviz.ui.runs import (  # noqa: F401
    distill_config_form,
    lecture_case_table,
    removed_runs_notice,
    run_actions,
    run_frames,
    run_panel,
    split_choice,
    start_sweep,
    sweep_panel,
)
from kdviz.ui.explorer import (  # noqa: F401
    EXPLORER_KEPT,
    EXPLORER_LAST_UPLOAD,
    EXPLORER_PARSED,
    EXPLORER_PICKED,
    EXPLORER_SHOWN,
    explorer_cell_pickers,
    explorer_convergence,
    explorer_enter,
    explorer_gallery,
    explorer_heatmap,
    explorer_image,
    explorer_picked,
    explorer_prediction,
    explorer_reset,
    explorer_run_offer,
    explorer_state,
    explorer_summary,
    explorer_sync_url,
    explorer_teacher,
    explorer_thumbnails,
    explorer_upload,
    explorer_upload_preview,
)
from kdviz.ui import why, ensembles, compression, papers  # noqa: F401,E402 — each registers its experiments' forms
from kdviz.ui.experiments import (  # noqa: F401
    experiment_tab,
    experiment_tab as why_experiment,
)
from kdviz.ui.ensembles import worked_example as ensemble_example  # noqa: F401
from kdviz.ui.compression import case_study as compression_case_study  # noqa: F401
from kdviz.ui.tour import (  # noqa: F401,E402
    draw_step as tour_draw_step,
    navigation as tour_navigation,
    session as tour_session,
    start_tour_runs,
    style as tour_style,
    update_tour_state,
)
from kdviz.ui.present import presentation_bar as tour_presentation_bar  # noqa: F401,E402
from kdviz.ui.tour import export as tour_export, poll as tour_poll  # noqa: F401,E402
