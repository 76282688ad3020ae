/**
 * Where the Node-RED editor draws the nodes and wires of an exported flow, estimated from the flow
 * alone: the box of each node (its width from its label, as the editor sizes it, a little wider to
 * be safe), the line its status takes under it, and the curve of each wire.
 */

export interface FlowNode {
  id: string;
  type: string;
  z?: string;
  name?: string;
  x?: number;
  y?: number;
  wires?: string[][];
  l?: boolean;
  [property: string]: unknown;
}

export interface Box {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export interface NodeLayout {
  node: FlowNode;
  /** The node itself, with the button of an inject (left) or debug (right) node. */
  box: Box;
  /** The status line under the node (empty for nodes that never show one). */
  status?: Box;
  /** Its width, a multiple of 20 as the editor makes it (30 for a node drawn without its label). */
  width: number;
  height: number;
}

/** The editor's own minimum node size and wire curve. */
const NODE_WIDTH = 100;
const NODE_HEIGHT = 30;
const PORT_SPACING = 13;
const CURVE_SCALE = 0.75;
const GRID = 20;
/** The editor's 14 px label font is about 6.3 px a character in Latin text; 7 keeps the estimate on the wide side. */
const LABEL_PX_PER_CHAR = 7;
/** Statuses are kept to about 20 characters of the 9 pt status font, after the 11 px dot. */
const STATUS_WIDTH = 150;
const STATUS_HEIGHT = 20;
const BUTTON_WIDTH = 25;

/** The labels the palette gives unnamed nodes of this package (locales/en-US paletteLabel). */
const DEFAULT_LABELS: Record<string, string> = {
  'ota-version': 'ota version',
  'ota-update-in': 'ota update in',
  'ota-download': 'ota download',
  'ota-verify': 'ota verify',
  'ota-report': 'ota report',
  'ota-gateway': 'ota gateway',
};
const WITHOUT_INPUT = new Set(['inject', 'catch', 'status', 'complete', 'link in', 'comment', 'ota-update-in', 'ui-control']);
/** Drawn as a small square without their label unless l is true. */
const LABEL_HIDDEN = new Set(['link in', 'link out', 'link call', 'junction']);
const WITHOUT_STATUS = new Set(['comment', 'link in', 'link out', 'junction']);

function labelOf(node: FlowNode): string {
  return (typeof node.name === 'string' && node.name !== '' ? node.name : DEFAULT_LABELS[node.type]) ?? node.type;
}

export function layoutOf(node: FlowNode): NodeLayout {
  const x = node.x ?? 0;
  const y = node.y ?? 0;
  const labelHidden = LABEL_HIDDEN.has(node.type) && node.l !== true;
  const width = labelHidden
    ? 30
    : Math.max(NODE_WIDTH, GRID * Math.ceil((labelOf(node).length * LABEL_PX_PER_CHAR + 50 + (WITHOUT_INPUT.has(node.type) ? 0 : 7)) / GRID));
  const height = labelHidden ? 30 : Math.max(NODE_HEIGHT, (node.wires?.length ?? 0) * 15);
  const box = { left: x - width / 2, top: y - height / 2, right: x + width / 2, bottom: y + height / 2 };
  if (node.type === 'inject') box.left -= BUTTON_WIDTH;
  if (node.type === 'debug') box.right += BUTTON_WIDTH;
  const status = WITHOUT_STATUS.has(node.type)
    ? undefined
    : { left: x - width / 2, top: y + height / 2, right: x - width / 2 + STATUS_WIDTH, bottom: y + height / 2 + STATUS_HEIGHT };
  return { node, box, status, width, height };
}

/**
 * True when the node sits on the editor's 20 px grid as its snapping puts it: the centre row on the
 * grid and the left edge on it. Widths are multiples of 20 (30 for a label-less node), so the centre
 * of a labelled node lands on a multiple of 10 and that of a 30 px node 15 past a grid line.
 */
export function onGrid(layout: NodeLayout): boolean {
  const x = layout.node.x ?? 0;
  const y = layout.node.y ?? 0;
  return y % GRID === 0 && (layout.width === 30 ? (x - 15) % GRID === 0 : x % (GRID / 2) === 0);
}

export function boxesOverlap(a: Box, b: Box): boolean {
  return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}

export function contains(box: Box, point: { x: number; y: number }): boolean {
  return point.x > box.left && point.x < box.right && point.y > box.top && point.y < box.bottom;
}

export interface WireLayout {
  source: NodeLayout;
  target: NodeLayout;
  port: number;
  /** Points along the curve the editor draws (a cubic Bézier from the output port to the input). */
  points: Array<{ x: number; y: number }>;
  /** A wire that runs right to left loops back across the flow. */
  forward: boolean;
}

/** The wires of the nodes, drawn as the editor draws a wire from left to right. */
export function wiresOf(layouts: NodeLayout[], samples = 40): WireLayout[] {
  const byId = new Map(layouts.map((layout) => [layout.node.id, layout]));
  const wires: WireLayout[] = [];
  for (const source of layouts) {
    const outputs = source.node.wires ?? [];
    for (const [port, targets] of outputs.entries()) {
      for (const targetId of targets) {
        const target = byId.get(targetId);
        if (!target) continue;
        const x1 = (source.node.x ?? 0) + source.width / 2;
        const y1 = (source.node.y ?? 0) - ((outputs.length - 1) / 2) * PORT_SPACING + PORT_SPACING * port;
        const x2 = (target.node.x ?? 0) - target.width / 2;
        const y2 = target.node.y ?? 0;
        const distance = Math.hypot(x2 - x1, y2 - y1);
        const scale = distance < NODE_WIDTH ? CURVE_SCALE - CURVE_SCALE * ((NODE_WIDTH - distance) / NODE_WIDTH) : CURVE_SCALE;
        const c1 = { x: x1 + NODE_WIDTH * scale, y: y1 };
        const c2 = { x: x2 - NODE_WIDTH * scale, y: y2 };
        const points = [];
        for (let i = 1; i < samples; i++) {
          const t = i / samples;
          const u = 1 - t;
          points.push({
            x: u * u * u * x1 + 3 * u * u * t * c1.x + 3 * u * t * t * c2.x + t * t * t * x2,
            y: u * u * u * y1 + 3 * u * u * t * c1.y + 3 * u * t * t * c2.y + t * t * t * y2,
          });
        }
        wires.push({ source, target, port, points, forward: x2 > x1 });
      }
    }
  }
  return wires;
}

/** The label the editor shows for the node, for messages. */
export function nodeDescription(layout: NodeLayout): string {
  return `${layout.node.type} "${labelOf(layout.node)}" (${layout.node.id} at ${layout.node.x},${layout.node.y})`;
}
