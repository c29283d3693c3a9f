// The measurement and annotation tools (Cornerstone3D tools), loaded after the first image is
// on screen: they are about a third of the viewer's code, and a doctor looks before measuring.
import {
  addTool,
  AngleTool,
  annotation as csAnnotation,
  ArrowAnnotateTool,
  EllipticalROITool,
  Enums as ToolEnums,
  init as toolsInit,
  LabelTool,
  LengthTool,
  state as toolsState,
  store,
  ToolGroupManager,
} from '@cornerstonejs/tools';
import { TOOL, type ToolKind } from './annotations';

/** The text a new arrow or label gets: asked by the viewer (an Element Plus dialog). */
export type AskText = () => Promise<string | null>;

let ready = false;

/** initTools runs once per page, after initCornerstone. */
export function initTools(): void {
  if (ready) return;
  ready = true;
  toolsInit();
  for (const t of [LengthTool, AngleTool, EllipticalROITool, ArrowAnnotateTool, LabelTool]) addTool(t);
}

/** ToolSet is the tool group of one viewport. */
export class ToolSet {
  private readonly groupId: string;

  constructor(renderingEngineId: string, viewportId: string, element: HTMLDivElement, askText: AskText) {
    this.groupId = `${renderingEngineId}-${viewportId}`;
    // The tools hook an element when Cornerstone enables it; one enabled before the tools were
    // loaded (the first image is drawn first) is hooked here.
    if (!toolsState.enabledElements.includes(element)) {
      store.addEnabledElement(new CustomEvent('sanping-tools-late', { detail: { element, viewportId, renderingEngineId } }) as unknown as Parameters<typeof store.addEnabledElement>[0]);
    }
    const group = ToolGroupManager.createToolGroup(this.groupId);
    if (!group) return;
    const ask = (done: (text: string | null) => void): void => {
      void askText().then(done);
    };
    const change = (_a: unknown, _e: unknown, done: (text: string | null) => void): void => {
      void askText().then(done);
    };
    group.addTool(TOOL.length);
    group.addTool(TOOL.angle);
    group.addTool(TOOL.ellipse);
    group.addTool(TOOL.arrow, { getTextCallback: ask, changeTextCallback: change, arrowFirst: true });
    group.addTool(TOOL.text, { getTextCallback: ask, changeTextCallback: change });
    group.addViewport(viewportId, renderingEngineId);
    for (const name of Object.values(TOOL)) group.setToolEnabled(name);
  }

  /** use makes one tool draw with the primary button (the others' drawings editable), or none (all drawn only). */
  use(kind: ToolKind | null): void {
    const group = ToolGroupManager.getToolGroup(this.groupId);
    if (!group) return;
    for (const [k, name] of Object.entries(TOOL)) {
      if (k === kind) group.setToolActive(name, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }] });
      else if (kind) group.setToolPassive(name);
      else group.setToolEnabled(name);
    }
  }

  destroy(): void {
    ToolGroupManager.destroyToolGroup(this.groupId);
  }
}

export { csAnnotation, ToolEnums };
